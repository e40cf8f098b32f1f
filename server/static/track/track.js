// The relative's tracking page (/track/<token>, server/routes/share.py): no account; polls
// GET /v1/track/<token> every few seconds for the call's status and the doctor's position, and says
// so when the link no longer works (the call is over: 410 link_expired; unknown link: 404).
import { bindLanguageSelect, errorText, initI18n, label, onLanguageChange, t } from "/static/shared/i18n.js";
import { $, eta, metres } from "/app/static/js/dom.js";
import { CallMarkers, createMap, readConfig } from "/app/static/js/map.js";

const POLL_MS = 3000;
const config = readConfig("track-config");
const token = decodeURIComponent(location.pathname.split("/").pop());
let state = null; // the last answer of /v1/track
let ended = config.ended; // null, "not_found" or "link_expired"
let map = null;
let markers = null;

function render() {
  if (ended) {
    $("live").hidden = true;
    $("ended").hidden = false;
    $("ended").textContent = t(ended === "link_expired" ? "patient.track.ended" : "patient.track.unknown");
    $("ended").dataset.code = ended;
    return;
  }
  if (!state) return;
  $("track-status").textContent = label("common.callStatus", state.status);
  $("track-status").dataset.status = state.status;
  $("track-address").textContent = state.address;
  const d = state.doctor;
  $("track-approach").hidden = !d;
  if (d) {
    $("track-distance").textContent = t("patient.call.distance", { distance: metres(d.distance_m) });
    $("track-eta").textContent = eta(d.eta_s);
  }
}

async function poll() {
  try {
    const response = await fetch(`/v1/track/${encodeURIComponent(token)}`, { headers: { accept: "application/json" }, cache: "no-store" });
    const body = await response.json().catch(() => null);
    if (response.status === 404 || response.status === 410) {
      ended = (body && body.error && body.error.code) || "not_found";
      if (markers) markers.setDoctor(null);
      render();
      return;
    }
    if (!response.ok) throw Object.assign(new Error(""), { code: body && body.error && body.error.code, body, status: response.status });
    $("track-error").textContent = "";
    state = body;
    markers.setPoint(body.lat, body.lon);
    if (body.doctor) markers.setDoctor(body.doctor.lat, body.doctor.lon);
    else markers.setDoctor(null);
    render();
  } catch (err) {
    $("track-error").textContent = err.code ? errorText(err) : t("common.error.offline");
  }
  setTimeout(poll, POLL_MS);
}

await initI18n();
bindLanguageSelect($("language"));
onLanguageChange(render);
if (ended) {
  render();
} else {
  $("live").hidden = false;
  map = createMap($("map"), config);
  markers = new CallMarkers(map);
  map.setView([config.view.lat, config.view.lon], 14);
  window.totTrack = { map, markers, get state() { return state; }, get ended() { return ended; } };
  await poll();
  if (state && !state.doctor) map.setView([state.lat, state.lon], 15);
}
