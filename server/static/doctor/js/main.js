// The doctor's app: sign-in, then the shift (status, location, wake lock), offers, the visit with its
// chat, and SOS, over the public REST API and one WebSocket (docs/doctor-app.md). Texts come from the
// shared catalogues (/static/i18n).
import { bindLanguageSelect, errorText, initI18n, onLanguageChange, t } from "/static/shared/i18n.js";
import { Socket } from "/static/shared/socket.js";
import { Agenda } from "./agenda.js";
import { api } from "./api.js";
import { OfferCard } from "./offer.js";
import { Shift } from "./shift.js";
import { SosPanel } from "./sos.js";
import { showConnection } from "./status.js";
import { Visit } from "./visit.js";

import { bindPushToggle, closeNotifications } from "/static/shared/push.js";
import { showSignIn } from "/static/shared/signin.js";

const $ = (id) => document.getElementById(id);

function showLogin() {
  showSignIn(api, start);
}

function start() {
  $("app").hidden = false;
  const me = api.user;
  $("me").textContent = me.full_name;
  const socket = new Socket({ getToken: () => api.accessToken, refreshToken: () => api.refresh() });
  const shift = new Shift(socket, {
    buttons: [$("shift-available"), $("shift-paused"), $("shift-offline")],
    serverStatus: $("server-status"),
    locationState: $("location-state"),
    locationHelp: $("location-help"),
    wakeState: $("wake-state"),
    error: $("shift-error"),
  });
  const getFix = () => shift.fix;
  const visit = new Visit($("visit"), { api, socket, getFix });
  shift.onFix = (fix) => visit.moved(fix);
  const openVisit = (id) => visit.open(id).catch((err) => { visit.error = errorText(err); console.warn("visit", err); });
  const offer = new OfferCard($("offer"), socket, { onAccepted: openVisit });
  const agenda = new Agenda($("agenda"), { api }); // loaded by the socket's first resync
  const push = bindPushToggle($("push"), api, "/doctor");
  // A notification's Accept / Decline (static/shared/push-sw.js): a message while the app is open, or
  // ?accept=<offer> / ?decline=<offer> when the click opened it. Answered over REST, the same service
  // as the card's buttons; the socket then brings call.assigned (or the next offer) as usual.
  const fromNotification = async ({ action, offer: offerId }) => {
    if (!offerId || (action !== "accept" && action !== "decline")) return;
    try {
      const answer = await api.post(`/v1/offers/${encodeURIComponent(offerId)}/${action}`, {});
      if (offer.offer && offer.offer.id === offerId) offer.dismiss();
      closeNotifications("/doctor", `offer:${offerId}`).catch(() => {});
      if (action === "accept") openVisit(answer.id);
    } catch (err) {
      $("shift-error").textContent = errorText(err);
    }
  };
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.data && event.data.type === "tot.push") fromNotification(event.data);
    });
  }
  const asked = new URLSearchParams(location.search);
  for (const action of ["accept", "decline"]) {
    if (asked.get(action)) {
      history.replaceState(null, "", "/doctor"); // a reload must not answer again
      fromNotification({ action, offer: asked.get(action) });
    }
  }
  const sos = new SosPanel({
    buttons: [$("sos-danger"), $("sos-complex")],
    confirm: $("sos-confirm"),
    confirmText: $("sos-confirm-text"),
    message: $("sos-message"),
    send: $("sos-send"),
    cancel: $("sos-cancel"),
    status: $("sos-status"),
  }, { api, socket, getFix });
  $("sos-status").tabIndex = -1;
  shift.activity = () => {
    if (visit.call && !visit.ended && !["completed", "cancelled"].includes(visit.call.status)) return "busy";
    return offer.offer && offer.offer.state === "open" ? "offered" : null;
  };

  // The doctor's own channel first: the server refuses a call channel on a connection without it.
  socket.subscribe(`doctor:${me.id}`, (type, data) => {
    switch (type) {
      case "doctor.status": shift.serverChanged(data.status); break;
      case "offer.created": offer.show(data); break;
      case "offer.expired":
      case "offer.withdrawn":
        offer.outcome(type, data);
        closeNotifications("/doctor", `offer:${data.offer}`).catch(() => {}); // its push is moot
        break;
      case "call.assigned":
        offer.assigned(data);
        openVisit(data.call.id);
        closeNotifications("/doctor", "offer:").catch(() => {});
        break;
      case "call.unassigned":
      case "call.cancelled":
        visit.left(type, data);
        agenda.load(); // a booked visit's cancel shows there too
        break;
      case "sos.acknowledged":
      case "sos.resolved": sos.update(data); break;
      default: break;
    }
  }, {
    // Events we could not get back (and at start): the active call and open offers are read over REST.
    onResync: () => {
      visit.reload().catch((err) => console.warn("reload", err));
      offer.reload(api).catch((err) => console.warn("offers", err));
      agenda.load();
    },
    resyncOnStart: true,
  });

  const connection = showConnection($("conn"), socket);
  socket.onState((state) => {
    // Connected or reconnected: the server may have taken the doctor off shift meanwhile (no fix for
    // a minute), and fixes taken while offline were not sent: say where the phone is and what the
    // doctor chose.
    if (state === "online") shift.reannounce();
  });
  socket.onReannounce = () => shift.reannounce();

  onLanguageChange(() => {
    connection();
    shift.render();
    offer.render();
    visit.render();
    sos.render();
    push.render();
    agenda.render();
  });
  // "Link Telegram" (shared/telegram.js), loaded lazily: an offline start goes on without it.
  import("/static/shared/telegram.js").then((m) => m.mountTelegramLink($("telegram"), api)).catch(() => {});
  $("logout").onclick = async () => {
    await shift.set("offline"); // off shift first: signed out, the app could not say so any more
    await push.signOut(); // this browser no longer rings for this doctor
    socket.stop();
    api.signOut();
  };
  api.onSignedOut = () => location.reload();

  shift.resume();
  socket.start();

  // Read-only handles for the end-to-end tests (docs/doctor-app.md).
  window.totDoctor = { socket, shift, offer, visit, sos, push, agenda };
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/doctor/sw.js", { scope: "/doctor" }).catch((err) => console.warn("service worker", err));
}
await initI18n();
bindLanguageSelect($("login-language"));
bindLanguageSelect($("language"));
if (api.session) start();
else showLogin();
