// Translations shared by the browser apps (the console now; the patient's and the doctor's apps later).
//
// One flat catalogue per language, /static/i18n/<lang>.json, its keys namespaced by app: "common.*"
// for every app, "console.*", "patient.*", "doctor.*". The language is the one picked in the page
// (remembered in localStorage), else the browser's first preference we have (ru* is Russian), else
// English. A key missing from a catalogue falls back to English, then to the key itself.
//
//   await initI18n();                               // once, before the first render
//   t("console.queue.title")                        // "Work queue" / "Очередь вызовов"
//   t("console.counts.doctors", { count: 5 })       // plural forms: key.one, .few, .many, .other
//   t("common.unit.km", { n: 3.4 })                 // numbers in {braces} formatted for the language
//   label("common.callStatus", call.status)         // a server value's name, or the value itself
//   <span data-i18n="common.action.signIn">, data-i18n-title, -placeholder, -aria-label: applyTranslations()
//
// tests/unit/test_i18n_catalogues.py checks that every key the apps use is in every catalogue.

export const LANGUAGES = ["en", "ru"];
const FALLBACK = "en";
const STORE = "tot-language";
const BASE = "/static/i18n";
const ATTRIBUTES = [
  ["data-i18n", null],
  ["data-i18n-title", "title"],
  ["data-i18n-placeholder", "placeholder"],
  ["data-i18n-aria-label", "aria-label"],
];

let current = FALLBACK;
const catalogues = {};
const listeners = new Set();

/** The language in use ("en" or "ru"). */
export function language() { return current; }

/** The language to start in: the stored choice, else the first of `preferences` we have, else English. */
export function preferredLanguage(preferences = navigator.languages || [navigator.language]) {
  let stored = null;
  try { stored = localStorage.getItem(STORE); } catch { /* storage disabled */ }
  if (LANGUAGES.includes(stored)) return stored;
  for (const tag of preferences || []) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return FALLBACK;
}

async function load(lang) {
  if (catalogues[lang]) return;
  try {
    const response = await fetch(`${BASE}/${lang}.json`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    catalogues[lang] = await response.json();
  } catch (err) {
    console.warn(`translations for ${lang} could not be loaded`, err);
    catalogues[lang] = {};
  }
}

/** Load the catalogues and translate the page; call once before rendering anything. */
export async function initI18n() {
  await Promise.all(LANGUAGES.map(load));
  current = preferredLanguage();
  document.documentElement.lang = current;
  applyTranslations(document);
  return current;
}

/** Switch to `lang`, remember it, translate the page and tell the listeners (onLanguageChange). */
export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) throw new Error(`unknown language ${lang}`);
  await load(lang);
  current = lang;
  try { localStorage.setItem(STORE, lang); } catch { /* storage disabled */ }
  document.documentElement.lang = lang;
  applyTranslations(document);
  for (const fn of listeners) fn(lang);
}

/** fn(lang) after every switch of language (to re-render what was drawn with t()). */
export function onLanguageChange(fn) { listeners.add(fn); }

function lookup(lang, key, params) {
  const catalogue = catalogues[lang];
  if (!catalogue) return undefined;
  if (typeof params.count === "number") {
    const form = new Intl.PluralRules(lang).select(params.count);
    const text = catalogue[`${key}.${form}`] ?? catalogue[`${key}.other`];
    if (text !== undefined) return text;
  }
  return catalogue[key];
}

function formatParam(value) {
  return typeof value === "number" ? new Intl.NumberFormat(current, { maximumFractionDigits: 1 }).format(value) : String(value);
}

/** The text of `key` in the current language, with {name} replaced by params.name. */
export function t(key, params = {}) {
  const text = lookup(current, key, params) ?? lookup(FALLBACK, key, params) ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? formatParam(params[name]) : whole));
}

/** Whether the current language (or English) has `key`. */
export function has(key) {
  return (catalogues[current] && key in catalogues[current]) || (catalogues[FALLBACK] && key in catalogues[FALLBACK]) || false;
}

/** The name of a value the server sends (a status, a role): `${group}.${value}` when the catalogue has
 * it, else the value itself with underscores as spaces. */
export function label(group, value) {
  if (value === null || value === undefined || value === "") return "";
  const key = `${group}.${value}`;
  return has(key) ? t(key) : String(value).replaceAll("_", " ");
}

/** A message for an error: the catalogue's text for its code (common.error.<code>), else the server's
 * Russian message in Russian, else the error's own message. */
export function errorText(err) {
  const code = err && err.code;
  if (code && has(`common.error.${code}`)) return t(`common.error.${code}`, { status: err.status ?? "" });
  const body = err && err.body && err.body.error;
  if (current === "ru" && body && body.message_ru) return body.message_ru;
  return (err && err.message) || String(err);
}

/** Translate `root` and what it contains: data-i18n sets the text, data-i18n-title / -placeholder /
 * -aria-label set those attributes. */
export function applyTranslations(root = document) {
  for (const [data, attribute] of ATTRIBUTES) {
    const found = [...root.querySelectorAll(`[${data}]`)];
    if (root.getAttribute && root.hasAttribute(data)) found.push(root);
    for (const el of found) {
      const text = t(el.getAttribute(data));
      if (attribute) el.setAttribute(attribute, text);
      else el.textContent = text;
    }
  }
}

/** Fill a <select> with the languages (each named in itself) and switch language when it changes. */
export function bindLanguageSelect(select) {
  select.replaceChildren(...LANGUAGES.map((lang) => {
    const option = document.createElement("option");
    option.value = lang;
    option.textContent = (catalogues[lang] && catalogues[lang]["common.language.name"]) || lang;
    return option;
  }));
  select.value = current;
  select.addEventListener("change", () => setLanguage(select.value));
  onLanguageChange((lang) => { select.value = lang; });
}

/** A local clock time ("14:03:27") of an epoch-millisecond timestamp, in the current language. */
export function clockTime(ms) {
  return ms ? new Date(ms).toLocaleTimeString(current, { hour12: false }) : "";
}
