// The connection badge: online, connecting, offline (with the next attempt's countdown).
import { t } from "/static/shared/i18n.js";

/** Show `socket`'s state in `el`; returns a function that redraws it (after a language switch). */
export function showConnection(el, socket) {
  let state = "offline";
  const draw = () => {
    el.className = `conn conn-${state}`;
    el.textContent = t(`doctor.conn.${state}`);
  };
  socket.onState((s) => { state = s; draw(); });
  return draw;
}
