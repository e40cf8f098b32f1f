// Small DOM and formatting helpers of the patient app (and the tracking page).
import { t } from "/static/shared/i18n.js";
export { h, metres } from "/static/shared/dom.js";

export const $ = (id) => document.getElementById(id);

/** "about 7 min" for an ETA in seconds (at least one minute). */
export function eta(seconds) {
  return t("patient.unit.eta", { n: Math.max(1, Math.round(seconds / 60)) });
}

/** A date and time of an epoch-millisecond timestamp, in the page's language. */
export function dateTime(ms, lang) {
  return ms ? new Date(ms).toLocaleString(lang, { dateStyle: "short", timeStyle: "short", hour12: false }) : "";
}
