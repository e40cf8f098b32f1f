// Web push for the apps (docs/notifications.md, "Web push"): after sign-in, a toggle subscribes this
// browser when the person allows notifications (the permission prompt needs their click), stores the
// subscription on the server for the signed-in person, and turns it off again. The app's service worker
// shows what arrives. Nothing here runs when the server has no VAPID key (GET /v1/push/key is 404) or
// the browser has no Push API: the toggle stays hidden.
import { t } from "/static/shared/i18n.js";

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

async function registration(scope) {
  return (await navigator.serviceWorker.getRegistration(scope)) || navigator.serviceWorker.ready;
}

async function serverKey(api) {
  try {
    return (await api.get("/v1/push/key")).public_key;
  } catch (err) {
    if (err.status === 404) return null; // web push is off on this server
    throw err;
  }
}

/** Subscribe this browser for the signed-in person; "on", "denied" or "unavailable". */
export async function enablePush(api, scope) {
  const key = await serverKey(api);
  if (!key) return "unavailable";
  if ((await Notification.requestPermission()) !== "granted") return "denied";
  const reg = await registration(scope);
  const sub = (await reg.pushManager.getSubscription())
    || (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }));
  await api.post("/v1/push/subscriptions", { ...sub.toJSON(), user_agent: navigator.userAgent.slice(0, 300) });
  return "on";
}

/** Unsubscribe this browser (on the server first, so no push is sent to a dead endpoint). */
export async function disablePush(api, scope) {
  const reg = await navigator.serviceWorker.getRegistration(scope);
  const sub = reg && (await reg.pushManager.getSubscription());
  if (sub) {
    await api.request("DELETE", `/v1/push/subscriptions?endpoint=${encodeURIComponent(sub.endpoint)}`).catch(() => {});
    await sub.unsubscribe();
  }
  return "off";
}

/** The browser's subscription, stored again for whoever is signed in now (a browser shared by two
 * accounts follows the one signed in). Quiet when there is none or push is off. */
async function resync(api, scope) {
  if (Notification.permission !== "granted") return "off";
  const reg = await navigator.serviceWorker.getRegistration(scope);
  const sub = reg && (await reg.pushManager.getSubscription());
  if (!sub) return "off";
  await api.post("/v1/push/subscriptions", { ...sub.toJSON(), user_agent: navigator.userAgent.slice(0, 300) });
  return "on";
}

/** Wire `button` as the toggle of the app at `scope` (e.g. "/doctor"); returns { render, signOut }. */
export function bindPushToggle(button, api, scope) {
  let state = "unavailable";
  const render = () => {
    button.hidden = state === "unavailable";
    button.textContent = t(`common.push.${state}`);
    button.title = t("common.push.label");
    button.setAttribute("aria-pressed", String(state === "on"));
    button.dataset.state = state;
  };
  const set = (next) => { state = next; render(); };
  button.onclick = async () => {
    button.disabled = true;
    try {
      set(state === "on" ? await disablePush(api, scope) : await enablePush(api, scope));
    } catch (err) {
      console.warn("push", err);
      set("failed");
    } finally {
      button.disabled = false;
    }
  };
  if (pushSupported()) {
    serverKey(api)
      .then((key) => (key ? resync(api, scope).then(set) : set("unavailable")))
      .catch((err) => { console.warn("push", err); set("off"); });
  }
  render();
  return { render, signOut: () => (state === "on" ? disablePush(api, scope).catch(() => {}) : Promise.resolve()) };
}

/** Close the app's notifications whose tag starts with `prefix` (an offer the socket settled:
 * expired, withdrawn, or the doctor now has a call). Quiet where there are none or no support. */
export async function closeNotifications(scope, prefix) {
  if (!("serviceWorker" in navigator)) return;
  const reg = await navigator.serviceWorker.getRegistration(scope);
  if (!reg || !reg.getNotifications) return;
  for (const n of await reg.getNotifications()) if (n.tag && n.tag.startsWith(prefix)) n.close();
}
