// Small DOM and formatting helpers shared by the console's views.

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
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "";
}

/** "850 m" or "3.4 km". */
export function metres(m) {
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
}

/** A short id for display: the first 8 characters of a UUID. */
export function shortId(id) {
  return String(id).slice(0, 8);
}
