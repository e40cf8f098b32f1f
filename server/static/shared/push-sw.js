// Web push in the apps' service workers (importScripts'd by /doctor/sw.js and /app/sw.js): shows what
// the server pushed (server/notify/push_payload.py: type, title, body, url, tag; for an offer its id,
// call, deadline and the Accept / Decline actions) and answers a click.
//
// A click focuses the app if a window of it is open and hands it the intent ({type: "tot.push",
// action: "accept" | "decline" | "open", offer, call}) by postMessage; with no window it opens the
// app at the notification's URL, /doctor?accept=<offer> or /doctor?decline=<offer> for the actions.
// The app does the accepting with its own REST client and token (a worker cannot read the
// localStorage the token lives in), through the same endpoint as its Accept button's service.
self.totPush = (() => {
  const scopePath = new URL(self.registration.scope).pathname.replace(/\/$/, "");

  function show(data) {
    const options = {
      body: data.body || "",
      lang: data.lang || "",
      icon: `${scopePath}/static/icon.svg`,
      data: { type: data.type, url: data.url || scopePath, offer: data.offer, call: data.call, deadline: data.deadline },
      requireInteraction: data.type === "offer",
    };
    if (data.tag) options.tag = data.tag;
    if (Array.isArray(data.actions)) options.actions = data.actions.slice(0, 2).map((a) => ({ action: a.action, title: a.title }));
    return self.registration.showNotification(data.title || "TOT Dispatch", options);
  }

  /** Where a click on `notification` (with `action`, "" for the body) leads. */
  function target(notification, action) {
    const data = notification.data || {};
    if (data.offer && (action === "accept" || action === "decline")) {
      return { url: `${scopePath}?${action}=${encodeURIComponent(data.offer)}`, intent: { action, offer: data.offer, call: data.call } };
    }
    return { url: data.url || scopePath, intent: { action: "open", offer: data.offer, call: data.call } };
  }

  async function click(notification, action) {
    notification.close();
    const { url, intent } = target(notification, action);
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const app = windows.find((c) => new URL(c.url).pathname.replace(/\/$/, "") === scopePath);
    if (app) {
      app.postMessage({ type: "tot.push", ...intent });
      try { await app.focus(); } catch (err) { /* focus needs the click's activation; the message went anyway */ }
      return "message";
    }
    await self.clients.openWindow(url);
    return "opened";
  }

  self.addEventListener("push", (event) => {
    let data;
    try {
      data = event.data ? event.data.json() : {};
    } catch (err) {
      data = { body: event.data ? event.data.text() : "" };
    }
    event.waitUntil(show(data));
  });

  self.addEventListener("notificationclick", (event) => {
    event.waitUntil(click(event.notification, event.action));
  });

  return { show, target, click };
})();
