// Small DOM and formatting helpers shared by the console's views.
import { clockTime, t } from "/static/shared/i18n.js";
export { h, metres } from "/static/shared/dom.js";

/** "4:05" or "1:02:03" for a duration in milliseconds (negative counts as zero). */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

/** Local clock time "14:03:27" of an epoch-millisecond timestamp. */
export function clock(ms) {
  return clockTime(ms);
}

/** A short id for display: the first 8 characters of a UUID. */
export function shortId(id) {
  return String(id).slice(0, 8);
}
