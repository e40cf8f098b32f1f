// The patient app's entry point: sign up or in, then the map, the request form or the open call, the
// rating after a visit and the history, over the public REST API and the WebSocket
// (docs/patient-app.md). Texts come from the shared catalogues (/static/i18n).
import { bindLanguageSelect, errorText, initI18n, onLanguageChange, t } from "/static/shared/i18n.js";
import { bindPushToggle } from "/static/shared/push.js";
import { Socket } from "/static/shared/socket.js";
import { api, ApiError } from "./api.js";
import { CallView, FINAL } from "./call.js";
import { $, h } from "./dom.js";
import { BookingForm } from "./booking.js";
import { History } from "./history.js";
import { CallMarkers, createMap, readConfig } from "./map.js";
import { RequestForm } from "./request.js";
import { Visits } from "./visits.js";

const config = readConfig("app-config");
const PHONE = /^\+?[0-9 ()-]{6,20}$/;

function showAuth() {
  $("app").hidden = true;
  $("auth").hidden = false;
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await api.login($("login-name").value.trim(), $("login-password").value);
      $("auth").hidden = true;
      start();
    } catch (err) {
      if (err instanceof ApiError && err.code === "phone_unconfirmed") {
        const login = $("login-name").value.trim();
        const password = $("login-password").value;
        const { askForCode } = await import("/static/shared/phone.js");
        askForCode($("login-form"), login, async () => { await api.login(login, password); $("auth").hidden = true; start(); });
        return;
      }
      $("login-error").textContent = err instanceof ApiError && err.status === 401 ? t("common.error.invalid_credentials") : errorText(err);
    }
  };
  $("signup-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("signup-error").textContent = "";
    const given = $("signup-login").value.trim();
    const password = $("signup-password").value;
    const body = { full_name: $("signup-name").value.trim(), password, role: "patient" };
    // A phone number is sent as E.164 (digits after a "+"), and signed in with the same.
    const login = PHONE.test(given) ? given.replace(/[ ()-]/g, "") : given;
    if (PHONE.test(given)) body.phone = login;
    else body.email = login;
    $("signup-submit").disabled = true;
    try {
      const response = await fetch("/v1/auth/register", {
        method: "POST", headers: { "content-type": "application/json", accept: "application/json" }, body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, answer);
      if (answer && answer.confirmation === "sms") {
        // The phone awaits its SMS code (docs/api.md, "Phone confirmation"); then sign in.
        const { askForCode } = await import("/static/shared/phone.js");
        askForCode($("signup-form"), login, async () => { await api.login(login, password); $("auth").hidden = true; start(); });
        return;
      }
      // Registration answers an address already in use like a new one (docs/api.md): signing in
      // with the password tells the two apart.
      await api.login(login, password);
      $("auth").hidden = true;
      start();
    } catch (err) {
      $("signup-error").textContent = err instanceof ApiError && err.status === 401 ? t("patient.auth.exists") : errorText(err);
    } finally {
      $("signup-submit").disabled = false;
    }
  };
}

function showConnection(socket) {
  let state = "offline";
  const show = () => {
    $("conn").className = `conn conn-${state}`;
    $("conn").textContent = t(`patient.conn.${state}`);
  };
  socket.onState((next) => { state = next; show(); });
  onLanguageChange(show);
}

function start() {
  $("app").hidden = false;
  const me = () => { $("me").textContent = api.user.full_name; };
  me();
  const map = createMap($("map"), config);
  const markers = new CallMarkers(map);
  const socket = new Socket({ getToken: () => api.accessToken, refreshToken: () => api.refresh() });
  showConnection(socket);
  const history = new History();
  let rateCall = null;

  const request = new RequestForm(map, markers, { onCreated: (call) => { request.hide(); view.open(call); history.update(call); } });
  const visits = new Visits();
  const booking = new BookingForm(request, { onBooked: () => { visits.load(); history.load(); } });
  const view = new CallView(socket, markers, {
    onChange: (call) => history.update(call),
    onFinished: (call) => {
      history.load();
      if (call.status === "completed") showRating(call);
      else { request.show(); $("request-error").textContent = t("patient.call.wasCancelled"); }
    },
  });

  // The five scores, drawn here: numbers are the same in every language.
  $("stars").replaceChildren(...[1, 2, 3, 4, 5].map((n) => h("label", {}, h("input", { type: "radio", name: "score", value: n, required: n === 1 }), ` ${n}`)));

  function showRating(call) {
    rateCall = call;
    request.hide();
    $("rate").hidden = false;
    $("rate-error").textContent = "";
    $("rate").reset();
    $("rate").querySelector("input[name=score]").focus();
  }
  function endRating() {
    rateCall = null;
    $("rate").hidden = true;
    request.show();
  }
  $("rate").onsubmit = async (ev) => {
    ev.preventDefault();
    const score = Number(new FormData($("rate")).get("score"));
    const comment = $("rate-comment").value.trim();
    try {
      await api.post(`/v1/calls/${rateCall.id}/rating`, comment ? { score, comment } : { score });
      endRating();
      $("request-error").textContent = "";
      $("point-note").textContent = t("patient.rate.thanks");
    } catch (err) {
      $("rate-error").textContent = errorText(err);
    }
  };
  $("rate-skip").onclick = endRating;

  const push = bindPushToggle($("push"), api, "/app");
  onLanguageChange(push.render);
  // "Link Telegram" (shared/telegram.js), loaded lazily: an offline start goes on without it.
  import("/static/shared/telegram.js").then((m) => m.mountTelegramLink($("telegram"), api)).catch(() => {});
  $("logout").onclick = async () => { socket.stop(); await push.signOut(); api.signOut(); };
  api.onSignedOut = () => location.reload();
  onLanguageChange(me);
  socket.start();

  booking.load();
  visits.load();
  history.load().then((items) => {
    // A booked visit waiting for its time is under "My visits", not the call being followed.
    const open = items.find((c) => !FINAL.has(c.status) && !(c.urgency === "planned" && c.status === "created"));
    if (open) view.open(open);
    else request.show();
  });

  // Read-only handles for the end-to-end tests (docs/patient-app.md).
  window.totPatient = {
    map, socket, markers, view, request, history, booking, visits,
    get call() { return view.call; },
    get approach() { return view.approach; },
  };
}

async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("/app/sw.js", { scope: "/app" });
  } catch (err) {
    console.warn("service worker", err);
  }
}

await initI18n();
bindLanguageSelect($("auth-language"));
bindLanguageSelect($("language"));
registerServiceWorker();
if (api.session) start();
else showAuth();
