// Small DOM and formatting helpers shared by the console's views.
import { clockTime, t } from "/static/shared/i18n.js";

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

/** "850 m" or "3.4 km" ("850 м", "3,4 км"). */
export function metres(m) {
  return m < 1000 ? t("common.unit.m", { n: Math.round(m) }) : t("common.unit.km", { n: Math.round(m / 100) / 10 });
}

/** A short id for display: the first 8 characters of a UUID. */
export function shortId(id) {
  return String(id).slice(0, 8);
}
