// Small DOM and formatting helpers of the doctor's app.
import { t } from "/static/shared/i18n.js";

/** An element: h("li", {class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** "4:05" for a duration in milliseconds (negative counts as zero). */
export function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** "850 m" or "3.4 km" in the current language. */
export function metres(m) {
  return m < 1000 ? t("common.unit.m", { n: Math.round(m) }) : t("common.unit.km", { n: Math.round(m / 100) / 10 });
}

/** A random id for a chat line (client_msg_id: A-Za-z0-9_.:-). */
export function messageId() {
  return `d-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
