// The dispatcher console's entry point: sign-in, then the map, the queue, SOS and the socket wired
// together. Every piece of data comes from the public REST API and the WebSocket (docs/console.md).
// Texts come from the shared catalogues (/static/i18n, docs/console.md "Languages").
import { bindLanguageSelect, initI18n, label, onLanguageChange, t } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { CallDetail } from "./call-detail.js";
import { Calls } from "./calls.js";
import { CallsLayer } from "./calls-layer.js";
import { DoctorsLayer } from "./doctors-layer.js";
import { h, shortId } from "./dom.js";
import { createMap, drawZones, firstView, L, mapNote } from "./map.js";
import { MapCells } from "./map-cells.js";
import { Queue } from "./queue.js";
import { Socket } from "/static/shared/socket.js";
import { Sos } from "./sos.js";
import { showConnection } from "./status.js";

import { bindPushToggle } from "/static/shared/push.js";
import { showSignIn } from "/static/shared/signin.js";

const $ = (id) => document.getElementById(id);

function showLogin() {
  showSignIn(api, start);
}

function start() {
  $("app").hidden = false;
  const me = () => { $("me").textContent = `${api.user.full_name} (${label("common.role", api.user.role)})`; };
  me();
  const map = createMap($("map"));
  const socket = new Socket({ getToken: () => api.accessToken, refreshToken: () => api.refresh() });
  const calls = new Calls(socket);
  let selected = null;

  const doctors = new DoctorsLayer(map, { onClick: (id, latlng) => doctorPopup(id, latlng) });
  const detail = new CallDetail($("detail"), { calls, socket, doctors, onClose: () => select(null) });
  const queue = new Queue($("queue"), calls, { onSelect: (id) => select(id) });
  const callsLayer = new CallsLayer(map, calls, doctors, { onSelect: (id) => select(id) });
  const sos = new Sos($("sos-banner"), map, socket, $("sound-toggle"));
  const note = mapNote($("map-note"));
  const cells = new MapCells(map, socket, doctors, { onNote: note });

  function select(id) {
    selected = id;
    queue.select(id);
    callsLayer.select(id);
    if (id) detail.open(id);
    else detail.close(false);
    const call = id && calls.get(id);
    doctors.highlight(call ? call.doctor_id : null);
    // A call picked in the queue may lie off the map: pan (no zoom change) just enough to show it.
    if (call && Number.isFinite(call.lat) && Number.isFinite(call.lon)) map.panInside([call.lat, call.lon], { padding: [60, 60] });
  }
  calls.onChange((id) => {
    if (selected && (id === null || id === selected)) doctors.highlight(calls.get(selected)?.doctor_id || null);
  });

  // Picking a doctor on the map: a popup with the doctor and, when a call is open, "assign".
  const names = new Map();
  async function doctorPopup(id, latlng) {
    const d = doctors.get(id);
    const body = h("div", { class: "doctor-popup", dataset: { doctor: id } }, h("strong", {}, names.get(id) || shortId(id)), d ? ` · ${label("common.doctorState", d.state)}` : "");
    const call = selected && calls.get(selected);
    if (call && d && d.state !== "busy" && d.state !== "offered" && call.doctor_id !== id) {
      body.append(h("div", {}, h("button", { class: "primary assign-here", onclick: () => { map.closePopup(); detail.assign(id); } }, t("console.doctor.assignHere"))));
    }
    L.popup().setLatLng(latlng).setContent(body).openOn(map);
    if (!names.has(id)) {
      try {
        const doctor = await api.get(`/v1/doctors/${id}`);
        names.set(id, doctor.full_name);
        body.querySelector("strong").textContent = doctor.full_name;
      } catch { /* the short id stays */ }
    }
  }

  const connection = showConnection($("conn"), socket);
  const showCounts = () => {
    const states = Object.entries(doctors.counts()).map(([state, n]) => `${n} ${label("common.doctorState", state)}`).join(", ");
    $("counts").textContent = `${t("console.counts.doctors", { count: doctors.doctors.size })}${states ? ` (${states})` : ""} · ${t("console.counts.calls", { count: calls.calls.size })}`;
  };
  setInterval(() => { showCounts(); callsLayer.updateLink(); }, 1000);
  onLanguageChange(() => {
    me();
    showCounts();
    connection();
    queue.render();
    detail.render();
    sos.render();
  });
  // Web push for escalations and unanswered SOS while the console is closed; a click on one opens
  // (or messages) the console with the call, which is then selected.
  const push = bindPushToggle($("push"), api, "/console");
  onLanguageChange(push.render);
  const pick = (id) => { if (id) select(id); };
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/console/sw.js", { scope: "/console" }).catch((err) => console.warn("service worker", err));
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.data && event.data.type === "tot.push") pick(event.data.call);
    });
  }
  const asked = new URLSearchParams(location.search).get("call");
  if (asked) { history.replaceState(null, "", "/console"); pick(asked); }
  // "Link Telegram" (shared/telegram.js), loaded lazily: an offline start goes on without it.
  import("/static/shared/telegram.js").then((m) => m.mountTelegramLink($("telegram"), api)).catch(() => {});
  $("logout").onclick = async () => { socket.stop(); await push.signOut(); api.signOut(); };
  api.onSignedOut = () => location.reload();

  calls.start();
  sos.start();
  socket.start();
  let zones = null;
  let view = null; // how the first view was chosen: "zones", "doctors" or "configured"
  drawZones(map)
    .then((drawn) => { zones = drawn.count; return drawn.bounds; })
    .catch((err) => { console.warn("zones", err); return null; })
    .then((bounds) => firstView(map, bounds, { onChange: (how) => { view = how; } }))
    .then((how) => { view = how; })
    .catch((err) => { console.warn("first view", err); view = "configured"; })
    .finally(() => cells.update());
  map.whenReady(() => cells.schedule());

  // Read-only handles for the end-to-end tests and the browser benchmark (docs/console.md).
  window.totConsole = {
    map, socket, calls, doctors, sos, cells, select,
    get selected() { return selected; },
    get zones() { return zones; },
    get view() { return view; },
  };
}

await initI18n();
bindLanguageSelect($("login-language"));
bindLanguageSelect($("language"));
if (api.session) start();
else showLogin();
