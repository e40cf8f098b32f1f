// The dispatcher console's entry point: sign-in, then the map, the queue, SOS and the socket wired
// together. Every piece of data comes from the public REST API and the WebSocket (docs/console.md).
import { api, ApiError } from "./api.js";
import { CallDetail } from "./call-detail.js";
import { Calls } from "./calls.js";
import { CallsLayer } from "./calls-layer.js";
import { DoctorsLayer } from "./doctors-layer.js";
import { h, shortId } from "./dom.js";
import { createMap, drawZones, L } from "./map.js";
import { MapCells } from "./map-cells.js";
import { Queue } from "./queue.js";
import { Socket } from "./socket.js";
import { Sos } from "./sos.js";
import { showConnection } from "./status.js";

const $ = (id) => document.getElementById(id);

function showLogin() {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await api.login($("login-name").value, $("login-password").value);
      $("login").hidden = true;
      start();
    } catch (err) {
      $("login-error").textContent = err instanceof ApiError && err.status === 401 ? "Wrong login or password." : err.message;
    }
  };
}

function start() {
  $("app").hidden = false;
  $("me").textContent = `${api.user.full_name} (${api.user.role})`;
  const map = createMap($("map"));
  const socket = new Socket({ getToken: () => api.accessToken, refreshToken: () => api.refresh() });
  const calls = new Calls(socket);
  let selected = null;

  const doctors = new DoctorsLayer(map, { onClick: (id, latlng) => doctorPopup(id, latlng) });
  const detail = new CallDetail($("detail"), { calls, socket, doctors, onClose: () => select(null) });
  const queue = new Queue($("queue"), calls, { onSelect: (id) => select(id) });
  const callsLayer = new CallsLayer(map, calls, doctors, { onSelect: (id) => select(id) });
  const sos = new Sos($("sos-banner"), map, socket, $("sound-toggle"));
  const note = (text) => { $("map-note").hidden = !text; $("map-note").textContent = text; };
  const cells = new MapCells(map, socket, doctors, { onNote: note });

  function select(id) {
    selected = id;
    queue.select(id);
    callsLayer.select(id);
    if (id) detail.open(id);
    else detail.close(false);
    const call = id && calls.get(id);
    doctors.highlight(call ? call.doctor_id : null);
  }
  calls.onChange((id) => {
    if (selected && (id === null || id === selected)) doctors.highlight(calls.get(selected)?.doctor_id || null);
  });

  // Picking a doctor on the map: a popup with the doctor and, when a call is open, "assign".
  const names = new Map();
  async function doctorPopup(id, latlng) {
    const d = doctors.get(id);
    const body = h("div", { class: "doctor-popup", dataset: { doctor: id } }, h("strong", {}, names.get(id) || shortId(id)), ` · ${d ? d.state : ""}`);
    const call = selected && calls.get(selected);
    if (call && d && d.state !== "busy" && d.state !== "offered" && call.doctor_id !== id) {
      body.append(h("div", {}, h("button", { class: "primary assign-here", onclick: () => { map.closePopup(); detail.assign(id); } }, "Assign to the open call")));
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

  showConnection($("conn"), socket);
  setInterval(() => {
    const counts = doctors.counts();
    $("counts").textContent = `${doctors.doctors.size} doctors on the map (${Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ")}) · ${calls.calls.size} active calls`;
    callsLayer.updateLink();
  }, 1000);
  $("logout").onclick = () => { socket.stop(); api.signOut(); };
  api.onSignedOut = () => location.reload();

  calls.start();
  sos.start();
  socket.start();
  let zones = null;
  drawZones(map).then((n) => { zones = n; }).catch((err) => console.warn("zones", err)).finally(() => cells.update());
  map.whenReady(() => cells.schedule());

  // Read-only handles for the end-to-end tests and the browser benchmark (docs/console.md).
  window.totConsole = {
    map, socket, calls, doctors, sos, cells, select,
    get selected() { return selected; },
    get zones() { return zones; },
  };
}

if (api.session) start();
else showLogin();
