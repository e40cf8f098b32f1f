// Active calls: read over REST, kept current by the `dispatch` channel (call.created, call.status,
// call.escalated). Offers in flight are read for calls in status "offered".
import { api } from "./api.js";

export const ACTIVE = ["created", "searching", "offered", "escalated", "assigned", "en_route", "arrived", "in_progress"];
const FINAL = new Set(["completed", "cancelled"]);
const PAGE = 200;
const MAX_PAGES = 10;
const ENDED_KEPT = 500;

export class Calls {
  constructor(socket) {
    this.socket = socket;
    this.calls = new Map(); // id -> call (REST shape) + {offers, escalation, statusAt}
    this.listeners = new Set();
    this.loaded = false;
    this.reloads = 0; // REST re-reads (first load, and each unrecoverable gap)
    // id -> final status of calls that ended while the console watched (the newest ENDED_KEPT): an
    // open call's panel says how it ended instead of only that it left.
    this.ended = new Map();
  }

  /** fn(callId | null) after any change (null: everything may have changed). */
  onChange(fn) { this.listeners.add(fn); }
  _changed(id) { for (const fn of this.listeners) fn(id); }

  start() {
    this.socket.subscribe("dispatch", (type, data) => this._event(type, data), {
      onResync: () => this.reload(),
      resyncOnStart: true,
    });
  }

  /** Re-read every active call (first load, or events were missed and could not be recovered). */
  async reload() {
    const fresh = new Map();
    for (let page = 0; page < MAX_PAGES; page++) {
      const { items } = await api.get(`/v1/calls?status=${ACTIVE.join(",")}&limit=${PAGE}&offset=${page * PAGE}`);
      for (const call of items) fresh.set(call.id, { ...this.calls.get(call.id), ...call });
      if (items.length < PAGE) break;
    }
    this.calls = fresh;
    this.loaded = true;
    this.reloads += 1;
    await Promise.all([...fresh.values()].filter((c) => c.status === "offered").map((c) => this.loadOffers(c.id)));
    this._changed(null);
  }

  async fetch(id) {
    const call = await api.get(`/v1/calls/${id}`);
    if (FINAL.has(call.status)) {
      this._end(id, call.status);
    } else {
      this.calls.set(id, { ...this.calls.get(id), ...call });
      this._changed(id);
    }
    return call;
  }

  _end(id, status) {
    this.calls.delete(id);
    this.ended.delete(id);
    this.ended.set(id, status);
    if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.keys().next().value);
    this._changed(id);
  }

  async loadOffers(id) {
    const { items } = await api.get(`/v1/calls/${id}/offers`);
    const call = this.calls.get(id);
    if (call) {
      call.offers = items;
      this._changed(id);
    }
    return items;
  }

  _event(type, data) {
    if (type === "call.created") {
      this.fetch(data.call).catch((err) => console.warn("could not read call", err));
    } else if (type === "call.status") {
      const call = this.calls.get(data.call);
      if (FINAL.has(data.status)) {
        this._end(data.call, data.status);
        return;
      }
      if (!call || data.version > call.version + 1) {
        this.fetch(data.call).catch((err) => console.warn("could not read call", err));
        return;
      }
      Object.assign(call, {
        status: data.status,
        version: Math.max(call.version, data.version),
        doctor_id: data.doctor ? data.doctor.id : null,
        doctor_name: data.doctor ? data.doctor.name : null,
        statusAt: Date.now(),
      });
      if (data.status !== "escalated") call.escalation = null;
      if (data.status === "offered") this.loadOffers(data.call).catch(() => {});
      else call.offers = (call.offers || []).filter((o) => o.outcome !== "pending");
      this._changed(data.call);
    } else if (type === "call.escalated") {
      const id = typeof data.call === "string" ? data.call : data.call.id;
      const call = this.calls.get(id);
      if (call) {
        call.escalation = data.reason;
        this._changed(id);
      } else {
        this.fetch(id).catch(() => {});
      }
    }
  }

  get(id) { return this.calls.get(id); }
  all() { return [...this.calls.values()]; }
}
