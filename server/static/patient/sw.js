// The patient app's service worker (scope /app, served by server/routes/patient_app.py): an offline
// shell. It keeps the app's own files (page, scripts, styles, catalogues, the map library) in a cache
// and serves them from there when the network is gone; the API and the socket are never cached.
// Network first, so a new version of the app is used as soon as the server can be reached.
const CACHE = "tot-patient-shell-v4";
const SHELL = [
  "/app",
  "/app/manifest.webmanifest",
  "/app/static/app.css",
  "/app/static/icon.svg",
  "/app/static/js/main.js",
  "/app/static/js/api.js",
  "/app/static/js/dom.js",
  "/app/static/js/map.js",
  "/app/static/js/request.js",
  "/app/static/js/call.js",
  "/app/static/js/history.js",
  "/app/static/js/booking.js",
  "/app/static/js/visits.js",
  "/static/shared/api.js",
  "/static/shared/dom.js",
  "/static/shared/i18n.js",
  "/static/shared/push.js",
  "/static/shared/push-sw.js",
  "/static/shared/socket.js",
  "/static/i18n/en.json",
  "/static/i18n/ru.json",
  "/static/vendor/leaflet/leaflet.css",
  "/static/vendor/leaflet/leaflet-src.esm.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("tot-patient-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || !SHELL.includes(url.pathname)) return;
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
