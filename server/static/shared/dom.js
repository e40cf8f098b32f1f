// DOM and formatting helpers every browser app uses (each app's own dom.js adds what only it needs).
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

/** "850 m" or "3.4 km" ("850 м", "3,4 км") for a distance in metres, in the current language. */
export function metres(m) {
  return m < 1000 ? t("common.unit.m", { n: Math.round(m) }) : t("common.unit.km", { n: Math.round(m / 100) / 10 });
}
