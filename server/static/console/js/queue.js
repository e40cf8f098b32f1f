// The work queue: escalated calls first (a human must act), then calls still searching, then offers
// in flight (with the time left), then calls a doctor has; oldest first within each group.
import { label, t } from "/static/shared/i18n.js";
import { duration, h } from "./dom.js";

const GROUP = { escalated: 0, created: 1, searching: 1, offered: 2, assigned: 3, en_route: 3, arrived: 3, in_progress: 3 };
const URGENCY = { emergency: 0, urgent: 1, planned: 2 };

/** The calls in queue order. */
export function queueOrder(calls) {
  return calls.slice().sort((a, b) =>
    (GROUP[a.status] ?? 9) - (GROUP[b.status] ?? 9) ||
    (URGENCY[a.urgency] ?? 9) - (URGENCY[b.urgency] ?? 9) ||
    (a.created_at || 0) - (b.created_at || 0));
}

/** The earliest deadline among the call's pending offers (epoch ms), or null. */
export function offerDeadline(call) {
  const pending = (call.offers || []).filter((o) => o.outcome === "pending" && o.deadline_at);
  return pending.length ? Math.min(...pending.map((o) => o.deadline_at)) : null;
}

export class Queue {
  /** onSelect(callId) when a call is clicked. */
  constructor(list, calls, { onSelect }) {
    this.list = list;
    this.calls = calls;
    this.onSelect = onSelect;
    this.items = new Map(); // id -> li
    this.selected = null;
    calls.onChange(() => this.render());
    setInterval(() => this.tick(), 1000);
  }

  select(id) {
    this.selected = id;
    this.render();
  }

  render() {
    const ordered = queueOrder(this.calls.all());
    const keep = new Set(ordered.map((c) => c.id));
    for (const [id, li] of this.items) if (!keep.has(id)) { li.remove(); this.items.delete(id); }
    for (const call of ordered) {
      let li = this.items.get(call.id);
      if (!li) {
        li = h("li", { dataset: { call: call.id }, onclick: () => this.onSelect(call.id) });
        this.items.set(call.id, li);
      }
      li.className = `${call.status}${call.id === this.selected ? " selected" : ""}`;
      li.replaceChildren(
        h("div", { class: "line" },
          h("span", {}, h("span", { class: `badge ${call.urgency}` }, label("common.urgency", call.urgency)), " ", call.address),
          h("span", { class: "wait", dataset: { since: call.created_at } }, duration(Date.now() - call.created_at))),
        h("div", { class: "line muted" },
          h("span", { class: "status" }, label("common.callStatus", call.status), call.escalation ? ` — ${call.escalation}` : ""),
          this._offerText(call)),
      );
      this.list.append(li); // moves it into order
    }
  }

  _offerText(call) {
    const deadline = call.status === "offered" ? offerDeadline(call) : null;
    if (deadline === null) return call.doctor_name ? h("span", {}, call.doctor_name) : "";
    return h("span", { class: "countdown", dataset: { deadline } }, t("console.queue.offer", { time: duration(deadline - Date.now()) }));
  }

  /** Once a second: waiting times and offer countdowns, without rebuilding the list. */
  tick() {
    const now = Date.now();
    for (const el of this.list.querySelectorAll(".wait")) el.textContent = duration(now - Number(el.dataset.since));
    for (const el of this.list.querySelectorAll(".countdown")) el.textContent = t("console.queue.offer", { time: duration(Number(el.dataset.deadline) - now) });
  }
}
