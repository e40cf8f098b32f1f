// The offer card: a call offered to this doctor (offer.created), its countdown to the deadline, Accept
// and Decline. The focus moves to the card when it appears. An offer whose deadline passed while the
// page was hidden (or the server's offer.expired) says so instead of offering buttons that would fail.
import { errorText, label, t } from "/static/shared/i18n.js";
import { duration, h, metres } from "./dom.js";

const TICK_MS = 250;

export class OfferCard {
  /** onAccepted(callId): the offer was accepted (the visit opens). */
  constructor(el, socket, { onAccepted }) {
    this.el = el;
    this.socket = socket;
    this.onAccepted = onAccepted;
    this.offer = null; // {id, call, deadline, distance_m, eta_s, state: open|accepting|expired|withdrawn|declined, error}
    this.timer = null;
    // Hidden pages get few or no timer runs (and phones sleep): stop counting while hidden and look
    // at the clock again the moment the page is shown.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this._tick();
      this._schedule();
    });
  }

  /** Server time now (epoch ms): the deadline is the server's. */
  now() { return Date.now() + (this.socket.serverOffset || 0); }

  show(data) {
    // Tell the server the app has it: its web push, held back a moment for this, is then not sent
    // (docs/protocol.md, offer.seen). Best effort: without it the phone also rings.
    this.socket.request("offer.seen", { offer: data.offer }).catch(() => {});
    this.offer = {
      id: data.offer, call: data.call, deadline: data.deadline, distance_m: data.distance_m, eta_s: data.eta_s,
      state: "open", error: "",
    };
    this._tick();
    this.render();
    this.el.hidden = false;
    this.el.focus();
    this._schedule();
  }

  /** Show again an offer still open on the server (after a reload, or events the channel lost). */
  async reload(api) {
    this.reloads = (this.reloads || 0) + 1;
    const open = (await api.get("/v1/offers/open")).items;
    const shown = this.offer && open.find((o) => o.offer === this.offer.id);
    if (open.length && !shown && !(this.offer && this.offer.state === "open")) this.show(open[0]);
  }

  /** offer.expired or offer.withdrawn: only for the offer on the card (others were never seen). */
  outcome(type, data) {
    if (!this.offer || data.offer !== this.offer.id) return;
    if (this.offer.state === "open" || this.offer.state === "accepting") {
      this.offer.state = type === "offer.expired" ? "expired" : "withdrawn";
      this.offer.reason = data.reason || "";
    }
    this.render();
  }

  /** call.assigned: the card's job is done when it is this offer's call. */
  assigned(data) {
    if (this.offer && data.call && data.call.id === this.offer.call.id) this.dismiss();
  }

  dismiss() {
    this.offer = null;
    this.el.hidden = true;
    this.el.replaceChildren();
    this._schedule();
  }

  _schedule() {
    const run = this.offer && this.offer.state === "open" && document.visibilityState === "visible";
    if (run && !this.timer) this.timer = setInterval(() => this._tick(), TICK_MS);
    if (!run && this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  _tick() {
    const offer = this.offer;
    if (!offer) return;
    if (offer.state === "open" && this.now() >= offer.deadline) {
      offer.state = "expired";
      this.render();
      this._schedule();
      return;
    }
    const left = this.el.querySelector(".countdown");
    if (left) left.textContent = duration(offer.deadline - this.now());
  }

  async accept() {
    const offer = this.offer;
    if (!offer || offer.state !== "open") return;
    offer.state = "accepting";
    this.render();
    try {
      await this.socket.request("offer.accept", { offer: offer.id });
      if (this.offer === offer) this.dismiss();
      this.onAccepted(offer.call.id);
    } catch (err) {
      if (this.offer !== offer) return;
      const final = { offer_expired: "expired", offer_withdrawn: "withdrawn", offer_declined: "declined" }[err.code];
      offer.state = final || "open";
      offer.error = final ? "" : errorText(err);
      this.render();
      this._schedule();
    }
  }

  async decline() {
    const offer = this.offer;
    if (!offer || offer.state !== "open") return;
    try {
      await this.socket.request("offer.decline", { offer: offer.id });
      if (this.offer === offer) this.dismiss();
    } catch (err) {
      offer.error = errorText(err);
      this.render();
    }
  }

  render() {
    const offer = this.offer;
    if (!offer) return;
    const call = offer.call || {};
    const hadFocus = this.el.contains(document.activeElement);
    const open = offer.state === "open" || offer.state === "accepting";
    const facts = [
      label("common.urgency", call.urgency),
      label("common.specialty", call.specialty),
      typeof offer.distance_m === "number" ? metres(offer.distance_m) : null,
      typeof offer.eta_s === "number" ? t("doctor.offer.eta", { min: Math.max(1, Math.round(offer.eta_s / 60)) }) : null,
    ].filter(Boolean);
    this.el.dataset.offer = offer.id;
    this.el.dataset.state = offer.state;
    this.el.setAttribute("aria-labelledby", "offer-title");
    this.el.replaceChildren(...[
      h("h2", { id: "offer-title" }, t("doctor.offer.title")),
      h("p", { class: "address" }, call.address || ""),
      h("p", { class: "facts" }, facts.join(" · ")),
      call.symptoms ? h("p", { class: "symptoms" }, t("doctor.offer.symptoms", { text: call.symptoms })) : null,
      open
        ? h("p", { class: "deadline" }, t("doctor.offer.timeLeft"), " ",
          h("strong", { class: "countdown", role: "timer" }, duration(offer.deadline - this.now())))
        : h("p", { class: "outcome", role: "alert" }, t(`doctor.offer.${offer.state}`)),
      offer.error ? h("p", { class: "error", role: "alert" }, offer.error) : null,
      open
        ? h("div", { class: "line" },
          h("button", { type: "button", class: "primary accept", disabled: offer.state === "accepting", onclick: () => this.accept() }, t("doctor.offer.accept")),
          h("button", { type: "button", class: "decline", disabled: offer.state === "accepting", onclick: () => this.decline() }, t("doctor.offer.decline")))
        : h("div", { class: "line" },
          h("button", { type: "button", class: "dismiss", onclick: () => this.dismiss() }, t("common.action.close"))),
    ].filter(Boolean)); // replaceChildren would write null as text
    if (hadFocus) this.el.focus(); // the button that had it was replaced
  }
}
