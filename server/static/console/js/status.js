// The connection badge in the top bar: online, connecting, or offline with the next retry.
import { t } from "/static/shared/i18n.js";

const TEXT = { online: "console.conn.online", connecting: "console.conn.connecting", offline: "console.conn.offline" };

export function showConnection(element, socket) {
  let detail = {};
  const render = () => {
    const state = socket.state;
    element.className = `conn conn-${state}`;
    if (state === "offline" && detail.retryAt) {
      const s = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      element.textContent = t("console.conn.retry", { seconds: s });
    } else {
      element.textContent = t(TEXT[state] || "console.conn.offline");
    }
    document.body.dataset.connection = state;
  };
  socket.onState((state, d) => { detail = d; render(); });
  setInterval(render, 1000);
  return render;
}
