// The dispatcher console's service worker (scope /console): web push only (escalations and
// unacknowledged SOS while the console is closed, docs/notifications.md "Web push"). It caches
// nothing: the console is a desk app, online by nature.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
importScripts("/static/shared/push-sw.js");
