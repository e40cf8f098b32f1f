// The doctor's app's service worker (scope /doctor): an offline shell. The app's own files are
// cached at install and served network-first, so an online phone always runs the newest code and an
// offline one still opens the app (which then shows "offline" and reconnects by itself). API calls
// and the WebSocket are never cached.
const CACHE = "tot-doctor-shell-v5";
const SHELL = [
  "/doctor",
  "/doctor/manifest.webmanifest",
  "/doctor/static/doctor.css",
  "/doctor/static/icon.svg",
  "/doctor/static/js/agenda.js",
  "/doctor/static/js/api.js",
  "/doctor/static/js/config.js",
  "/doctor/static/js/dom.js",
  "/doctor/static/js/main.js",
  "/doctor/static/js/offer.js",
  "/doctor/static/js/shift.js",
  "/doctor/static/js/sos.js",
  "/doctor/static/js/status.js",
  "/doctor/static/js/visit.js",
  "/static/shared/api.js",
  "/static/shared/dom.js",
  "/static/shared/i18n.js",
  "/static/shared/push.js",
  "/static/shared/push-sw.js",
  "/static/shared/signin.js",
  "/static/shared/socket.js",
  "/static/i18n/en.json",
  "/static/i18n/ru.json",
  "/static/vendor/leaflet/leaflet.css",
  "/static/vendor/leaflet/leaflet-src.esm.js",
];
const SHELL_SET = new Set(SHELL);

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("tot-doctor-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL_SET.has(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((hit) => hit || Response.error())),
  );
});

// Web push: show what the server pushed, and answer clicks (static/shared/push-sw.js; an offer's
// Accept / Decline open or message the app, which answers through the REST API).
importScripts("/static/shared/push-sw.js");
