// SOS alerts that cannot be missed: a flashing banner on top of everything, a repeating alarm tone
// (WebAudio) while any alert is unacknowledged, and a flashing marker on the map. Acknowledge and
// resolve go over the socket (sos.ack, sos.resolve), over REST when the socket is down.
import * as L from "/static/vendor/leaflet/leaflet-src.esm.js";
import { errorText, label, t } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { clock, h, shortId } from "./dom.js";

const ALARM_EVERY_MS = 2000;
const SOCKET_DOWN = new Set(["offline", "connection_lost", "no_answer"]); // then the same over REST

/** A two-tone alarm through WebAudio (browsers allow sound only after a user gesture: unlock()). */
class Alarm {
  constructor() {
    this.ctx = null;
    this.enabled = true;
  }

  unlock() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!this.ctx) this.ctx = new Ctx();
    if (this.ctx.state === "suspended") this.ctx.resume();
  }

  get audible() { return this.enabled && this.ctx && this.ctx.state === "running"; }

  beep() {
    this.beeps = (this.beeps || 0) + 1;
    if (!this.audible) return;
    const t = this.ctx.currentTime;
    for (const [i, freq] of [[0, 880], [1, 660], [2, 880]]) {
      const osc = this.ctx.createOscillator();
      const gain = this.ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, t + i * 0.2);
      gain.gain.setValueAtTime(0, t + i * 0.2 + 0.18);
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(t + i * 0.2);
      osc.stop(t + i * 0.2 + 0.2);
    }
  }
}

export class Sos {
  constructor(banner, map, socket, soundButton) {
    this.banner = banner;
    this.map = map;
    this.socket = socket;
    this.alerts = new Map(); // id -> alert (status open | acknowledged)
    this.markers = new Map();
    this.alarm = new Alarm();
    this.soundButton = soundButton;
    this.alarm.unlock(); // right after the sign-in click, the page may still play sound
    soundButton.addEventListener("click", () => {
      this.alarm.unlock();
      this.alarm.enabled = !this.alarm.enabled;
      this.render();
    });
    // Any click on the page may unlock sound (the login click usually already did).
    addEventListener("pointerdown", () => this.alarm.unlock(), { capture: true });
    setInterval(() => { if (this.unacknowledged().length) this.alarm.beep(); }, ALARM_EVERY_MS);
  }

  start() {
    this.socket.subscribe("sos", (type, data) => this._event(type, data), {
      onResync: () => this.reload(),
      resyncOnStart: true,
    });
  }

  async reload() {
    const { items } = await api.get("/v1/sos");
    this.alerts = new Map(items.filter((a) => a.status !== "resolved").map((a) => [a.id, a]));
    this.render();
  }

  _event(type, data) {
    if (type === "sos.resolved") this.alerts.delete(data.id);
    else this.alerts.set(data.id, { ...this.alerts.get(data.id), ...data });
    if (type === "sos.raised" && data.status === "open" && !data.repeat) this.alarm.beep();
    this.render();
  }

  unacknowledged() { return [...this.alerts.values()].filter((a) => a.status === "open"); }

  async _op(op, fields, rest, body) {
    try {
      const ack = await this.socket.request(op, fields);
      return ack.sos;
    } catch (err) {
      if (err.code && !SOCKET_DOWN.has(err.code)) throw err;
      return api.post(rest, body); // the socket is down: the same over REST
    }
  }

  async acknowledge(id) {
    const alert = await this._op("sos.ack", { sos: id }, `/v1/sos/${id}/acknowledge`);
    this._event("sos.acknowledged", alert);
  }

  async resolve(id, note) {
    const alert = await this._op("sos.resolve", { sos: id, note }, `/v1/sos/${id}/resolve`, { note });
    this._event("sos.resolved", alert);
  }

  render() {
    const sound = this.alarm.enabled ? (this.alarm.audible ? "console.sound.on" : "console.sound.locked") : "console.sound.off";
    this.soundButton.dataset.i18n = sound; // kept by applyTranslations after a switch of language
    this.soundButton.textContent = t(sound);
    const alerts = [...this.alerts.values()].sort((a, b) => (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1) || a.created_at - b.created_at);
    this.banner.hidden = alerts.length === 0;
    this.banner.style.animation = this.unacknowledged().length ? "" : "none";
    this.banner.replaceChildren(...alerts.map((a) => this._item(a)));
    for (const [id, marker] of this.markers) {
      if (!this.alerts.has(id)) { marker.remove(); this.markers.delete(id); }
    }
    for (const a of alerts) {
      if (a.lat === null || a.lat === undefined || this.markers.has(a.id)) continue;
      const marker = L.marker([a.lat, a.lon], {
        icon: L.divIcon({ className: "", iconSize: [28, 28], html: `<div class="sos-marker" data-sos="${a.id}"></div>` }),
        zIndexOffset: 1000,
      }).addTo(this.map);
      marker.bindTooltip(() => t("console.sos.marker", { kind: label("common.sosKind", a.kind) }));
      this.markers.set(a.id, marker);
    }
  }

  _item(a) {
    const note = h("input", { name: `note-${a.id}`, placeholder: t("console.sos.notePlaceholder"), "aria-label": t("console.sos.notePlaceholder") });
    const where = a.lat !== null && a.lat !== undefined ? h("button", { onclick: () => this.map.setView([a.lat, a.lon], 15) }, t("console.sos.show")) : null;
    const line = t("console.sos.line", { kind: label("common.sosKind", a.kind), time: clock(a.created_at), who: shortId(a.raised_by) });
    return h("div", { class: `sos-item ${a.status}`, dataset: { sos: a.id } },
      h("span", {}, `${line}${a.message ? ` · ${a.message}` : ""}`),
      where,
      a.status === "open"
        ? h("button", { class: "sos-ack", onclick: () => this.acknowledge(a.id).catch((err) => alert(errorText(err))) }, t("console.sos.acknowledge"))
        : h("form", { class: "chat-form", onsubmit: (ev) => {
            ev.preventDefault();
            if (note.value.trim()) this.resolve(a.id, note.value.trim()).catch((err) => alert(errorText(err)));
          } }, h("span", {}, t("console.sos.acknowledged")), note, h("button", { type: "submit", class: "sos-resolve" }, t("console.sos.resolve"))),
    );
  }
}
