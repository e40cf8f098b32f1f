// Small DOM and formatting helpers of the doctor's app.
export { h, metres } from "/static/shared/dom.js";

/** "4:05" for a duration in milliseconds (negative counts as zero). */
export function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** A random id for a chat line (client_msg_id: A-Za-z0-9_.:-). */
export function messageId() {
  return `d-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
