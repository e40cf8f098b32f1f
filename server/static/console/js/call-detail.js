// One call in detail: its facts, its offers with their countdown, the doctors to assign it to (nearest
// available first), cancel and re-launch, its timeline (events) and its chat. While a call is open its
// channel call:<id> is followed, for status changes, chat and the doctor's live position.
import { api } from "./api.js";
import { errorText, label, t } from "/static/shared/i18n.js";
import { clock, duration, h, metres, shortId } from "./dom.js";

const CANCELLABLE = new Set(["created", "searching", "offered", "escalated", "assigned", "en_route", "arrived", "in_progress"]);

export class CallDetail {
  constructor(panel, { calls, socket, doctors, onClose }) {
    this.panel = panel;
    this.calls = calls;
    this.socket = socket;
    this.doctors = doctors;
    this.onClose = onClose;
    this.id = null;
    this.events = [];
    this.messages = [];
    this.candidates = null;
    this.anySpecialty = false;
    this.message = "";
    calls.onChange((id) => { if (this.id && (id === null || id === this.id)) this.render(); });
    setInterval(() => this.tick(), 1000);
  }

  async open(id) {
    if (this.id === id) return;
    this.close(false);
    this.id = id;
    this.events = [];
    this.messages = [];
    this.candidates = null;
    this.message = "";
    this.panel.hidden = false;
    this.socket.subscribe(`call:${id}`, (type, data) => this._event(id, type, data), {
      onResync: () => this.reload(id),
      resyncOnStart: true,
    });
    this.render();
  }

  close(notify = true) {
    if (this.id) this.socket.unsubscribe(`call:${this.id}`);
    this.id = null;
    this.panel.hidden = true;
    this.panel.replaceChildren();
    if (notify) this.onClose();
  }

  async reload(id) {
    const [events, chat] = await Promise.all([
      api.get(`/v1/calls/${id}/events`),
      api.get(`/v1/calls/${id}/messages?limit=100`),
      this.calls.fetch(id).then((call) => call.status === "offered" && this.calls.loadOffers(id)),
    ]);
    if (this.id !== id) return;
    this.events = events.items;
    this.messages = chat.items;
    this.render();
  }

  _event(id, type, data) {
    if (this.id !== id) return;
    if (type === "doctor.position") {
      this.doctors.move(data.doctor, data.lat, data.lon, data.ts);
    } else if (type === "chat.message") {
      if (!this.messages.some((m) => m.id === data.id)) this.messages.push(data);
      this.render();
    } else if (type === "call.status") {
      api.get(`/v1/calls/${id}/events`).then((events) => { if (this.id === id) { this.events = events.items; this.render(); } });
    }
  }

  async loadCandidates() {
    const id = this.id;
    const { items } = await api.get(`/v1/calls/${id}/candidates?limit=10&any_specialty=${this.anySpecialty}`);
    if (this.id === id) { this.candidates = items; this.render(); }
  }

  /** Run an action; `key` names it in the catalogue (console.action.*) for the result line. */
  async _act(key, action) {
    const what = t(key);
    try {
      await action();
      this.message = t("console.action.done", { action: what });
      await this.reload(this.id);
    } catch (err) {
      this.message = t("console.action.failed", { action: what, error: errorText(err) });
      this.render();
    }
  }

  /** Assign (or reassign) the open call to a doctor: POST /v1/calls/{id}/assign. */
  assign(doctorId) {
    const id = this.id;
    return this._act("console.action.assign", async () => {
      await api.post(`/v1/calls/${id}/assign`, { doctor_id: doctorId, reason: t("console.call.assignReason") });
      this.candidates = null;
    });
  }

  render() {
    const call = this.id && this.calls.get(this.id);
    if (!call) {
      const ended = this.id && this.calls.ended.get(this.id);
      const gone = ended ? t("console.call.ended", { status: label("common.callStatus", ended) }) : t("console.call.gone");
      if (this.id) this.panel.replaceChildren(h("p", { class: "muted", id: "call-gone", dataset: { status: ended || "" } }, gone), h("button", { onclick: () => this.close() }, t("common.action.close")));
      return;
    }
    const focused = document.activeElement;
    const keepInput = focused && this.panel.contains(focused) && focused.tagName === "INPUT" ? { name: focused.name, value: focused.value } : null;
    this.panel.replaceChildren(...[
      h("div", { class: "line" },
        h("h2", {}, h("span", { class: `badge ${call.urgency}` }, label("common.urgency", call.urgency)), " ", call.address),
        h("button", { onclick: () => this.close(), title: t("common.action.close"), "aria-label": t("common.action.close") }, "×")),
      h("div", { class: "muted" }, `${label("common.specialty", call.specialty)} · ${label("common.callStatus", call.status)} · ${t("console.call.waiting")} `,
        h("span", { class: "wait", dataset: { since: call.created_at } }, duration(Date.now() - call.created_at))),
      call.symptoms ? h("p", {}, call.symptoms) : null,
      call.escalation ? h("p", { class: "error" }, t("console.call.escalated", { reason: call.escalation })) : null,
      call.doctor_id ? h("p", {}, t("console.call.doctor"), " ", call.doctor_name || shortId(call.doctor_id)) : null,
      this._actions(call),
      this.message ? h("p", { class: "muted", id: "action-result" }, this.message) : null,
      this._candidates(call),
      this._offers(call),
      h("h3", {}, t("console.call.timeline")),
      h("ol", { class: "timeline" }, this.events.map((e) =>
        h("li", {}, `${clock(e.at)} ${e.from_status ? label("common.callStatus", e.from_status) : "—"} → ${label("common.callStatus", e.to_status)}`,
          e.actor_role ? ` (${label("common.role", e.actor_role)})` : "", e.reason ? `: ${e.reason}` : ""))),
      this._chat(call),
    ].filter(Boolean));
    if (keepInput) {
      const input = this.panel.querySelector(`input[name="${keepInput.name}"]`);
      if (input) { input.value = keepInput.value; input.focus(); }
    }
  }

  _actions(call) {
    const reason = h("input", { name: "cancel-reason", placeholder: t("console.call.cancelReason"), "aria-label": t("console.call.cancelReason") });
    return h("div", { class: "actions" },
      h("button", { class: "primary", id: "show-candidates", onclick: () => this.loadCandidates() },
        call.doctor_id ? t("console.call.reassign") : t("console.call.assign")),
      call.status === "escalated"
        ? h("button", { id: "relaunch", onclick: () => this._act("console.action.relaunch", () => api.post(`/v1/calls/${call.id}/relaunch`)) }, t("console.call.relaunch"))
        : null,
      CANCELLABLE.has(call.status)
        ? h("form", { class: "chat-form", onsubmit: (ev) => {
            ev.preventDefault();
            if (!reason.value.trim()) return;
            this._act("console.action.cancel", () => api.post(`/v1/calls/${call.id}/cancel`, { reason: reason.value.trim() }));
          } }, reason, h("button", { class: "danger", type: "submit", id: "cancel-call" }, t("console.call.cancel")))
        : null,
    );
  }

  _candidates(call) {
    if (this.candidates === null) return null;
    return h("div", {},
      h("h3", {}, t("console.candidates.title")),
      h("label", { class: "muted" },
        h("input", { type: "checkbox", checked: this.anySpecialty, onchange: (ev) => { this.anySpecialty = ev.target.checked; this.loadCandidates(); } }),
        " ", t("console.candidates.anySpecialty")),
      this.candidates.length === 0 ? h("p", { class: "muted" }, t("console.candidates.none")) : null,
      h("ul", { class: "candidates" }, this.candidates.map((c) =>
        h("li", { dataset: { doctor: c.doctor_id } },
          h("span", {}, c.name || shortId(c.doctor_id), h("span", { class: "muted" }, ` ${metres(c.distance_m)} · ${t("console.candidates.eta", { time: duration(c.eta_s * 1000) })}${c.serves_zone ? "" : ` · ${t("console.candidates.otherZone")}`}`)),
          h("button", { class: "primary", onclick: () => this.assign(c.doctor_id) }, t("console.candidates.assign"))))),
    );
  }

  _offers(call) {
    const offers = call.offers || [];
    if (!offers.length) return null;
    return h("div", {},
      h("h3", {}, t("console.call.offers")),
      h("ul", { class: "offers" }, offers.map((o) =>
        h("li", {},
          h("span", {}, shortId(o.doctor_id), h("span", { class: "muted" }, ` ${o.distance_m ? metres(o.distance_m) : ""}`)),
          o.outcome === "pending"
            ? h("span", { class: "countdown", dataset: { deadline: o.deadline_at } }, duration(o.deadline_at - Date.now()))
            : h("span", { class: "muted" }, label("common.offerOutcome", o.outcome))))));
  }

  _chat(call) {
    const text = h("input", { name: "chat-text", placeholder: t("console.chat.placeholder"), "aria-label": t("console.chat.placeholder"), maxlength: 2000 });
    const send = async (ev) => {
      ev.preventDefault();
      const value = text.value.trim();
      if (!value) return;
      text.value = "";
      try {
        const sent = await api.post(`/v1/calls/${call.id}/messages`, { client_msg_id: crypto.randomUUID(), text: value });
        if (!this.messages.some((m) => m.id === sent.id)) this.messages.push(sent);
        this.render();
      } catch (err) {
        this.message = t("console.action.failed", { action: t("console.action.chat"), error: errorText(err) });
        this.render();
      }
    };
    return h("div", {},
      h("h3", {}, t("console.chat.title")),
      h("div", { class: "chat" }, this.messages.map((m) =>
        h("div", {}, h("span", { class: "from" }, `${clock(m.at)} ${m.sender.name || label("common.role", m.sender.role)}: `), m.text))),
      h("form", { class: "chat-form", onsubmit: send }, text, h("button", { type: "submit" }, t("console.chat.send"))));
  }

  tick() {
    const now = Date.now();
    for (const el of this.panel.querySelectorAll(".wait")) el.textContent = duration(now - Number(el.dataset.since));
    for (const el of this.panel.querySelectorAll(".countdown")) el.textContent = duration(Number(el.dataset.deadline) - now);
  }
}
