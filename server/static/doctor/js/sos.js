// The doctor's SOS: "danger" and "complex call", each behind a confirmation step (keyboard: the focus
// goes to Send, Escape cancels and gives the focus back). Sent over the socket, over REST when the
// socket is down; the dispatcher's acknowledgement and resolution come back on doctor:<id>.
import { clockTime, errorText, label, t } from "/static/shared/i18n.js";

const SOCKET_DOWN = new Set(["offline", "connection_lost", "no_answer"]);

export class SosPanel {
  /** els: {buttons: [button], confirm, confirmText, message, send, cancel, status}; getFix(): the last fix. */
  constructor(els, { api, socket, getFix }) {
    this.els = els;
    this.api = api;
    this.socket = socket;
    this.getFix = getFix;
    this.kind = null;
    this.opener = null;
    this.alert = null; // the last alert raised (SosOut)
    this.error = "";
    for (const button of els.buttons) button.addEventListener("click", () => this.ask(button.dataset.kind, button));
    els.cancel.addEventListener("click", () => this.cancel());
    els.send.addEventListener("click", () => this.send());
    els.confirm.addEventListener("keydown", (ev) => { if (ev.key === "Escape") { ev.preventDefault(); this.cancel(); } });
  }

  ask(kind, opener) {
    this.kind = kind;
    this.opener = opener;
    this.els.confirm.dataset.kind = kind;
    this.els.confirm.hidden = false;
    this.els.message.value = "";
    this.render();
    this.els.send.focus();
  }

  cancel() {
    this.kind = null;
    this.els.confirm.hidden = true;
    if (this.opener) this.opener.focus();
  }

  async send() {
    const kind = this.kind;
    if (!kind) return;
    const fields = { kind };
    const fix = this.getFix();
    if (fix) { fields.lat = fix.lat; fields.lon = fix.lon; }
    const message = this.els.message.value.trim();
    if (message) fields.message = message;
    this.els.send.disabled = true;
    this.error = "";
    try {
      let alert;
      try {
        alert = (await this.socket.request("sos", fields)).sos;
      } catch (err) {
        if (!SOCKET_DOWN.has(err.code)) throw err;
        alert = await this.api.post("/v1/sos", fields);
      }
      this.alert = alert;
      this.kind = null;
      this.els.confirm.hidden = true;
      this.els.status.focus();
    } catch (err) {
      this.error = errorText(err);
    } finally {
      this.els.send.disabled = false;
    }
    this.render();
  }

  /** sos.acknowledged / sos.resolved on the doctor's channel. */
  update(data) {
    if (!this.alert || data.id !== this.alert.id) this.alert = data;
    else Object.assign(this.alert, data);
    this.render();
  }

  render() {
    const els = this.els;
    if (this.kind) els.confirmText.textContent = t("doctor.sos.confirm", { kind: label("common.sosKind", this.kind) });
    const alert = this.alert;
    els.status.hidden = !alert && !this.error;
    els.status.className = `sos-status ${alert ? alert.status : "error"}`;
    els.status.dataset.sos = alert ? alert.id : "";
    els.status.dataset.status = alert ? alert.status : "";
    if (this.error) { els.status.textContent = this.error; return; }
    if (!alert) return;
    const kind = label("common.sosKind", alert.kind);
    const key = { open: "doctor.sos.sent", acknowledged: "doctor.sos.acknowledged", resolved: "doctor.sos.resolved" }[alert.status] || "doctor.sos.sent";
    const at = clockTime(alert.status === "resolved" ? alert.resolved_at : alert.status === "acknowledged" ? alert.acknowledged_at : alert.created_at);
    els.status.textContent = t(key, { kind, at, note: alert.resolution_note || "" });
  }
}
