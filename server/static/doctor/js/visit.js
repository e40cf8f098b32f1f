// The call the doctor is on: its detail, a navigation link, a small map, the status buttons (en route,
// arrived, in progress, completed with the final price) and the chat with the patient. The call's
// channel (call:<id>) brings status changes and chat lines; after a gap it cannot recover, REST.
import * as L from "/static/vendor/leaflet/leaflet-src.esm.js";
import { clockTime, errorText, label, t } from "/static/shared/i18n.js";
import { config } from "./config.js";
import { h, messageId } from "./dom.js";

const ACTIVE = ["assigned", "en_route", "arrived", "in_progress"];
const NEXT = { assigned: "en_route", en_route: "arrived", arrived: "in_progress", in_progress: "completed" };
const FINAL = new Set(["completed", "cancelled"]);

/** Links that open the phone's navigation: an OpenStreetMap route from `from` (when known), geo: URI. */
export function navigationLinks(call, from) {
  const to = `${call.lat},${call.lon}`;
  const route = from ? `${from.lat},${from.lon};${to}` : `;${to}`;
  return {
    osm: `https://www.openstreetmap.org/directions?engine=fossgis_osrm_car&route=${encodeURIComponent(route)}`,
    geo: `geo:${to}?q=${to}`,
  };
}

export class Visit {
  constructor(el, { api, socket, getFix }) {
    this.el = el;
    this.api = api;
    this.socket = socket;
    this.getFix = getFix;
    this.call = null;
    this.messages = new Map(); // id -> message, in arrival order
    this.ended = null; // why the doctor left the call: cancelled | unassigned
    this.error = "";
    this.busy = false;
    this.reloads = 0;
    this.map = null;
  }

  get channel() { return this.call && `call:${this.call.id}`; }

  /** Open call `id` (after an accept, a call.assigned or a reload). */
  async open(id) {
    // The accept's answer and the call.assigned event both open the call: once is enough.
    if ((this.call && this.call.id === id && !this.ended) || this.opening === id) return;
    this.close();
    this.opening = id;
    try {
      this.call = await this.api.get(`/v1/calls/${id}`);
    } finally {
      this.opening = null;
    }
    this.ended = null;
    this.socket.subscribe(`call:${id}`, (type, data) => this._event(type, data), { onResync: () => this.refresh() });
    await this._loadMessages();
    this.render();
  }

  close() {
    if (this.channel) this.socket.unsubscribe(this.channel);
    this.call = null;
    this.messages.clear();
    this.ended = null;
    this.error = "";
    if (this.map) { this.map.remove(); this.map = null; this.me = null; }
    this.el.hidden = true;
    this.el.replaceChildren();
  }

  /** The doctor's active call, if any, read over REST (at start and after the doctor's channel lost events). */
  async reload() {
    this.reloads += 1;
    const page = await this.api.get(`/v1/calls?status=${ACTIVE.join(",")}&limit=1`);
    const active = page.items[0];
    if (active) await this.open(active.id);
    else if (this.call && !FINAL.has(this.call.status)) await this.refresh();
  }

  /** Re-read the open call and its chat (the call channel lost events). */
  async refresh() {
    if (!this.call) return;
    this.call = await this.api.get(`/v1/calls/${this.call.id}`);
    await this._loadMessages();
    this.render();
  }

  async _loadMessages() {
    let after = "";
    for (;;) {
      const page = await this.api.get(`/v1/calls/${this.call.id}/messages?limit=200${after ? `&after=${after}` : ""}`);
      for (const m of page.items) this.messages.set(m.id, m);
      if (!page.next) break;
      after = page.next;
    }
  }

  /** call.unassigned or call.cancelled on the doctor's channel. */
  left(type, data) {
    if (!this.call || data.call !== this.call.id) return;
    this.ended = type === "call.cancelled" ? "cancelled" : "unassigned";
    if (type === "call.cancelled") this.call.status = "cancelled";
    this.socket.unsubscribe(this.channel);
    this.render();
  }

  _event(type, data) {
    if (type === "call.status") {
      if (typeof data.version === "number" && data.version < (this.call.version || 0)) return; // a late event
      this.call.status = data.status;
      if (typeof data.version === "number") this.call.version = data.version;
      this.render();
    } else if (type === "chat.message") {
      const message = data.message || data;
      this.messages.set(message.id, message);
      this._renderChat();
    }
  }

  async setStatus(status) {
    const body = { status };
    if (status === "completed") {
      const input = this.el.querySelector("#visit-price");
      const price = input.value.trim().replace(",", ".");
      if (!/^\d{1,8}(\.\d{1,2})?$/.test(price)) {
        this.error = t("doctor.visit.priceNeeded");
        this.render();
        this.el.querySelector("#visit-price").focus();
        return;
      }
      body.price_final = price;
    }
    this.busy = true;
    this.error = "";
    this.render();
    try {
      this.call = await this.api.post(`/v1/calls/${this.call.id}/status`, body);
    } catch (err) {
      this.error = errorText(err);
    }
    this.busy = false;
    this.render();
  }

  async sendChat(text) {
    const call = this.call.id;
    const frame = { call, client_msg_id: messageId(), text };
    try {
      const ack = await this.socket.request("chat.send", frame);
      this.messages.set(ack.message.id, ack.message);
    } catch (err) {
      if (!["offline", "connection_lost", "no_answer"].includes(err.code)) throw err;
      const message = await this.api.post(`/v1/calls/${call}/messages`, { client_msg_id: frame.client_msg_id, text });
      this.messages.set(message.id, message);
    }
    this._renderChat();
  }

  render() {
    const call = this.call;
    if (!call) return;
    this.el.hidden = false;
    this.el.dataset.call = call.id;
    this.el.dataset.status = call.status;
    const next = !this.ended && NEXT[call.status];
    const links = navigationLinks(call, this.getFix());
    const hadFocus = this.el.contains(document.activeElement) ? document.activeElement.id : null;
    const actions = [];
    if (next === "completed") {
      actions.push(h("label", {}, t("doctor.visit.price"), " ",
        h("input", { id: "visit-price", inputmode: "decimal", autocomplete: "off", value: call.price_final || "" })));
    }
    if (next) {
      actions.push(h("button", { type: "button", id: "visit-next", class: "primary", disabled: this.busy, dataset: { next }, onclick: () => this.setStatus(next) },
        t(`doctor.visit.to.${next}`)));
    }
    const note = this.ended
      ? t(`doctor.visit.${this.ended}`)
      : call.status === "completed" ? t("doctor.visit.completed", { price: call.price_final ?? "" }) : "";
    this.el.replaceChildren(...[
      h("h2", {}, t("doctor.visit.title"), " · ", h("span", { class: "status" }, label("common.callStatus", call.status))),
      h("p", { class: "address" }, call.address),
      h("p", { class: "facts" }, [label("common.urgency", call.urgency), label("common.specialty", call.specialty)].join(" · ")),
      call.symptoms ? h("p", { class: "symptoms" }, t("doctor.offer.symptoms", { text: call.symptoms })) : null,
      h("p", { class: "nav" },
        h("a", { id: "nav-osm", href: links.osm, target: "_blank", rel: "noopener" }, t("doctor.visit.navigate")), " · ",
        h("a", { id: "nav-geo", href: links.geo }, t("doctor.visit.openInMaps"))),
      h("div", { id: "visit-map", class: "visit-map", "aria-label": t("doctor.visit.map"), role: "img" }),
      note ? h("p", { class: "note", role: "status" }, note) : null,
      h("div", { class: "line actions" }, actions),
      this.error ? h("p", { class: "error", role: "alert" }, this.error) : null,
      FINAL.has(call.status) || this.ended ? h("button", { type: "button", id: "visit-close", onclick: () => this.close() }, t("common.action.close")) : null,
      h("section", { class: "chat", "aria-labelledby": "chat-title" },
        h("h3", { id: "chat-title" }, t("doctor.chat.title")),
        h("ol", { id: "chat-lines", class: "chat-lines", "aria-live": "polite" }),
        this.ended || FINAL.has(call.status) ? null : h("form", { id: "chat-form", class: "line", onsubmit: (ev) => this._submitChat(ev) },
          h("input", { id: "chat-text", maxlength: "2000", autocomplete: "off", "aria-label": t("doctor.chat.label"), placeholder: t("doctor.chat.placeholder") }),
          h("button", { type: "submit" }, t("doctor.chat.send")))),
    ].filter(Boolean)); // replaceChildren would write null as text
    this._renderChat();
    this._drawMap();
    if (hadFocus && document.getElementById(hadFocus)) document.getElementById(hadFocus).focus();
    else if (hadFocus) this.el.querySelector("button, input")?.focus();
  }

  async _submitChat(ev) {
    ev.preventDefault();
    const input = this.el.querySelector("#chat-text");
    const text = input.value.trim();
    if (!text) return;
    try {
      await this.sendChat(text);
      input.value = "";
      this.error = "";
    } catch (err) {
      this.error = errorText(err);
      this.render();
    }
  }

  _renderChat() {
    const list = this.el.querySelector("#chat-lines");
    if (!list) return;
    const me = this.api.user.id;
    const lines = [...this.messages.values()].sort((a, b) => a.at - b.at);
    list.replaceChildren(...lines.map((m) => h("li", { class: m.sender.id === me ? "mine" : "theirs", dataset: { id: m.id } },
      h("span", { class: "who" }, m.sender.id === me ? t("doctor.chat.me") : (m.sender.name || label("common.role", m.sender.role))),
      " ", h("time", {}, clockTime(m.at)), " ",
      h("span", { class: "text" }, m.text))));
    list.scrollTop = list.scrollHeight;
  }

  /** A new position of the doctor: move its marker (the map was drawn with the previous one). */
  moved(fix) {
    if (!this.map) return;
    if (this.me) this.me.setLatLng([fix.lat, fix.lon]);
    else this._drawMap();
  }

  _drawMap() {
    const box = this.el.querySelector("#visit-map");
    if (this.map) { this.map.remove(); this.map = null; }
    const call = this.call;
    const map = L.map(box, { zoomControl: true, attributionControl: Boolean(config.tileUrl) });
    if (config.tileUrl) L.tileLayer(config.tileUrl, { attribution: config.tileAttribution, maxZoom: 19 }).addTo(map);
    const target = [call.lat, call.lon];
    L.circleMarker(target, { radius: 9, color: "#c62828", weight: 3 }).addTo(map);
    const fix = this.getFix();
    this.me = null;
    if (fix) {
      this.me = L.circleMarker([fix.lat, fix.lon], { radius: 7, color: "#1f6feb", fillOpacity: 0.8 }).addTo(map);
      map.fitBounds([target, [fix.lat, fix.lon]], { padding: [24, 24], maxZoom: 16 });
    } else {
      map.setView(target, 15);
    }
    this.map = map;
  }
}
