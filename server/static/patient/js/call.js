// The patient's open call: its status (call:<id> on the socket, re-read over REST when events may
// have been missed), the assigned doctor approaching on the map with distance and ETA
// (doctor.position), the chat, cancelling while the life cycle allows, the SOS with a confirmation
// step, and a share link for a relative.
import { errorText, label, onLanguageChange, t } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { $, eta, h, metres } from "./dom.js";

export const FINAL = new Set(["completed", "cancelled"]);
/** A patient may cancel until the doctor arrives (dispatch/lifecycle.py). */
const CANCELLABLE = new Set(["created", "searching", "offered", "assigned", "en_route", "escalated"]);
const WITH_DOCTOR = new Set(["assigned", "en_route", "arrived", "in_progress"]);

export class CallView {
  /** onChange(call) after every change of the call; onFinished(call) when it completes or is cancelled. */
  constructor(socket, markers, { onChange = () => {}, onFinished }) {
    this.socket = socket;
    this.markers = markers;
    this.onChange = onChange;
    this.onFinished = onFinished;
    this.call = null;
    this.doctorName = null;
    this.approach = null; // {distance_m, eta_s, lat, lon, ts} from the last doctor.position
    this.messages = new Map(); // id -> message
    this.note = "";
    $("cancel").onclick = () => this.openConfirm("cancel-confirm", "cancel-reason");
    $("cancel-no").onclick = () => this.closeConfirm("cancel-confirm", "cancel");
    $("cancel-yes").onclick = () => this.cancel();
    $("sos").onclick = () => this.openConfirm("sos-confirm", "sos-no");
    $("sos-no").onclick = () => this.closeConfirm("sos-confirm", "sos");
    $("sos-yes").onclick = () => this.raiseSos();
    $("share").onclick = () => this.share();
    $("share-copy").onclick = () => this.copyShare();
    $("chat-form").onsubmit = (ev) => { ev.preventDefault(); this.sendChat(); };
    for (const id of ["sos-confirm", "cancel-confirm"]) {
      $(id).addEventListener("keydown", (ev) => { if (ev.key === "Escape") this.closeConfirm(id, id === "sos-confirm" ? "sos" : "cancel"); });
    }
    onLanguageChange(() => this.render());
  }

  get channel() { return this.call && `call:${this.call.id}`; }

  /** Follow `call` (a call summary from REST). */
  open(call) {
    this.close();
    this.call = call;
    this.messages.clear();
    this.approach = null;
    this.doctorName = null;
    this.note = "";
    $("call").hidden = false;
    $("chat-log").replaceChildren();
    $("share-box").hidden = true;
    this.markers.setPoint(call.lat, call.lon);
    this.render();
    this.socket.subscribe(`call:${call.id}`, (type, data) => this.onEvent(type, data), {
      onResync: () => this.reload(), resyncOnStart: true,
    });
  }

  close() {
    if (this.channel) this.socket.unsubscribe(this.channel);
    this.call = null;
    $("call").hidden = true;
    this.markers.setDoctor(null);
  }

  async reload() {
    if (!this.call) return;
    const id = this.call.id;
    try {
      const [call, page] = await Promise.all([api.get(`/v1/calls/${id}`), api.get(`/v1/calls/${id}/messages?limit=200`)]);
      if (!this.call || this.call.id !== id) return;
      for (const m of page.items) this.addMessage(m);
      this.update(call);
    } catch (err) {
      $("call-error").textContent = errorText(err);
    }
  }

  update(call) {
    if (!this.call || call.id !== this.call.id || call.version < this.call.version) return;
    this.call = call;
    if (call.doctor_id && !this.doctorName) this.readDoctorName(call.doctor_id);
    if (!WITH_DOCTOR.has(call.status)) { this.approach = null; this.markers.setDoctor(null); }
    this.render();
    this.onChange(call);
    if (FINAL.has(call.status)) {
      const done = this.call;
      this.close();
      this.onFinished(done);
    }
  }

  onEvent(type, data) {
    if (!this.call) return;
    if (type === "call.status") {
      if (data.version < this.call.version) return; // a late event: the call moved on since
      if (data.eta_s !== null && data.eta_s !== undefined && !this.approach) this.approach = { eta_s: data.eta_s, distance_m: null };
      // A call sent back to searching (the doctor dropped it) has no doctor any more.
      const doctorId = data.doctor ? data.doctor.id : WITH_DOCTOR.has(data.status) ? this.call.doctor_id : null;
      if (data.doctor && data.doctor.name) this.doctorName = data.doctor.name;
      else if (doctorId !== this.call.doctor_id) this.doctorName = null;
      this.update({ ...this.call, status: data.status, version: data.version, doctor_id: doctorId });
      // The event carries the status only: the rest (doctor, price, times) is read again.
      this.refreshQuietly();
    } else if (type === "doctor.position") {
      if (!WITH_DOCTOR.has(this.call.status)) return;
      this.approach = { distance_m: data.distance_m, eta_s: data.eta_s, lat: data.lat, lon: data.lon, ts: data.ts };
      this.markers.setDoctor(data.lat, data.lon);
      this.render();
    } else if (type === "chat.message") {
      this.addMessage(data);
    } else if (type === "sos.acknowledged") {
      this.note = "patient.sos.acknowledged";
      this.render();
    } else if (type === "sos.resolved") {
      this.note = "patient.sos.resolved";
      this.render();
    }
  }

  /** The doctor's name after a reload (call.status names the doctor only when the status changes). */
  async readDoctorName(id) {
    if (this.readingName === id) return;
    this.readingName = id;
    try {
      const doctor = await api.get(`/v1/doctors/${id}`);
      if (this.call && this.call.doctor_id === id) { this.doctorName = doctor.full_name; this.render(); }
    } catch { /* the name stays unknown: "assigned" */ }
  }

  async refreshQuietly() {
    const id = this.call && this.call.id;
    if (!id) return;
    try { const call = await api.get(`/v1/calls/${id}`); if (this.call && this.call.id === id) this.update(call); } catch { /* the events carry the status */ }
  }

  render() {
    const call = this.call;
    if (!call) return;
    $("call-status").textContent = label("common.callStatus", call.status);
    $("call-status").dataset.status = call.status;
    $("call-doctor").textContent = call.doctor_id
      ? t("patient.call.doctor", { name: this.doctorName || t("patient.call.doctorUnnamed") })
      : t(call.status === "escalated" ? "patient.call.escalated" : "patient.call.searching");
    const a = this.approach;
    const showApproach = a && WITH_DOCTOR.has(call.status) && call.status !== "in_progress";
    $("call-approach").hidden = !showApproach;
    if (showApproach) {
      $("call-distance").textContent = a.distance_m === null || a.distance_m === undefined ? "" : t("patient.call.distance", { distance: metres(a.distance_m) });
      $("call-eta").textContent = a.eta_s === null || a.eta_s === undefined ? "" : eta(a.eta_s);
      $("call-approach").dataset.distance = a.distance_m ?? "";
      $("call-approach").dataset.eta = a.eta_s ?? "";
    }
    $("call-note").textContent = this.note ? t(this.note) : "";
    $("cancel").hidden = !CANCELLABLE.has(call.status);
    if ($("cancel").hidden) $("cancel-confirm").hidden = true;
    for (const el of $("chat-log").children) el.querySelector(".who").textContent = this.who(this.messages.get(el.dataset.id));
  }

  openConfirm(box, focus) {
    $(box).hidden = false;
    $(focus).focus();
  }

  closeConfirm(box, back) {
    $(box).hidden = true;
    $(back).focus();
  }

  async cancel() {
    const reason = $("cancel-reason").value.trim() || t("patient.call.cancelDefault");
    $("call-error").textContent = "";
    try {
      const call = await api.post(`/v1/calls/${this.call.id}/cancel`, { reason });
      $("cancel-confirm").hidden = true;
      this.update(call);
    } catch (err) {
      $("call-error").textContent = errorText(err);
    }
  }

  async raiseSos() {
    $("call-error").textContent = "";
    try {
      await api.post("/v1/sos", { kind: "emergency", call: this.call.id });
      this.closeConfirm("sos-confirm", "sos");
      this.note = "patient.sos.sent";
      this.render();
    } catch (err) {
      $("call-error").textContent = errorText(err);
    }
  }

  async share() {
    $("call-error").textContent = "";
    try {
      const link = await api.post(`/v1/calls/${this.call.id}/share`);
      $("share-link").value = new URL(link.path, location.origin).href;
      $("share-box").hidden = false;
      $("share-link").focus();
      $("share-link").select();
    } catch (err) {
      $("call-error").textContent = errorText(err);
    }
  }

  async copyShare() {
    const url = $("share-link").value;
    try {
      if (navigator.share) await navigator.share({ title: t("patient.share.title"), url });
      else await navigator.clipboard.writeText(url);
    } catch { $("share-link").select(); }
  }

  who(m) {
    if (!m) return "";
    if (api.user && m.sender.id === api.user.id) return t("patient.chat.me");
    return m.sender.name || label("common.role", m.sender.role);
  }

  addMessage(m) {
    if (this.messages.has(m.id) || !this.call || m.call !== this.call.id) return;
    this.messages.set(m.id, m);
    const mine = api.user && m.sender.id === api.user.id;
    const li = h("li", { class: mine ? "mine" : "", dataset: { id: m.id } }, h("div", { class: "who" }, this.who(m)), h("div", { class: "text" }, m.text));
    const log = $("chat-log");
    const after = [...log.children].find((el) => this.messages.get(el.dataset.id).at > m.at);
    log.insertBefore(li, after || null);
    log.scrollTop = log.scrollHeight;
  }

  async sendChat() {
    const input = $("chat-text");
    const text = input.value.trim();
    if (!text || !this.call) return;
    const id = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
    $("call-error").textContent = "";
    try {
      const m = await api.post(`/v1/calls/${this.call.id}/messages`, { client_msg_id: id, text });
      input.value = "";
      this.addMessage(m);
    } catch (err) {
      $("call-error").textContent = errorText(err);
    }
  }
}
