// "My visits": the patient's booked visits, upcoming (soonest first, each with a cancel behind a second
// press) and past (GET /v1/bookings?scope=upcoming|past: a patient sees only their own).
import { errorText, label, onLanguageChange, t } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { $, h } from "./dom.js";
import { hhmm } from "./booking.js";

export class Visits {
  constructor() {
    this.upcoming = [];
    this.past = [];
    this.confirming = null; // the booking id whose cancel awaits its second press
    onLanguageChange(() => this.render());
  }

  async load() {
    try {
      const [upcoming, past] = await Promise.all([
        api.get("/v1/bookings?scope=upcoming"),
        api.get("/v1/bookings?scope=past&limit=20"),
      ]);
      this.upcoming = upcoming.items;
      this.past = past.items;
    } catch (err) {
      $("visits-error").textContent = errorText(err);
    }
    this.render();
  }

  async cancel(visit) {
    $("visits-error").textContent = "";
    if (this.confirming !== visit.booking_id) {
      this.confirming = visit.booking_id;
      this.render();
      return;
    }
    try {
      await api.post(`/v1/bookings/${visit.booking_id}/cancel`, { reason: t("patient.visits.cancelReason") });
      this.confirming = null;
      await this.load();
    } catch (err) {
      $("visits-error").textContent = errorText(err);
    }
  }

  item(visit, upcoming) {
    const when = `${visit.start.slice(0, 10)} ${hhmm(visit.start)}`;
    const status = visit.cancelled ? "cancelled" : visit.status;
    return h("li", { dataset: { call: visit.call_id, booking: visit.booking_id, status } },
      h("time", { datetime: visit.start }, when), " · ",
      h("span", { class: "service" }, visit.service.name), " · ",
      h("span", { class: "address" }, visit.address), " · ",
      h("span", { class: "status" }, label("common.callStatus", status)),
      upcoming ? h("button", { type: "button", class: "visit-cancel", onclick: () => this.cancel(visit) },
        t(this.confirming === visit.booking_id ? "patient.visits.cancelConfirm" : "patient.visits.cancel")) : null);
  }

  render() {
    $("visits-upcoming").replaceChildren(...this.upcoming.map((v) => this.item(v, true)));
    $("visits-past").replaceChildren(...this.past.map((v) => this.item(v, false)));
    $("visits-empty").hidden = this.upcoming.length > 0;
  }
}
