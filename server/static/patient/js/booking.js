// "Book a visit": a clinic's service, a date, the free times at the point chosen on the map
// (GET /v1/slots), then the booking (POST /v1/bookings with an Idempotency-Key). docs/patient-app.md.
import { newIdempotencyKey } from "/static/shared/api.js";
import { errorText, onLanguageChange, t } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { $, h } from "./dom.js";

/** YYYY-MM-DD of a Date on the phone's own calendar. */
export function isoDate(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** "2027-03-01T10:00:00+03:00" -> "10:00": the slot's time in the place's own zone. */
export const hhmm = (iso) => iso.slice(11, 16);

export class BookingForm {
  /** request: the request form (its point and address); onBooked(booking) once the server booked. */
  constructor(request, { onBooked }) {
    this.request = request;
    this.onBooked = onBooked;
    this.services = [];
    this.slots = null; // null: not looked up yet
    this.chosen = null;
    this.key = null;
    this.keyBody = null;
    const tomorrow = new Date();
    tomorrow.setDate(tomorrow.getDate() + 1);
    $("book-date").value = isoDate(tomorrow);
    $("book-date").min = isoDate(new Date());
    $("book-find").onclick = () => this.find();
    $("book-service").onchange = () => this.clearSlots();
    $("book-date").onchange = () => this.clearSlots();
    $("book").onsubmit = (ev) => { ev.preventDefault(); this.confirm(); };
    onLanguageChange(() => this.render());
  }

  /** Every clinic's services still offered. */
  async load() {
    try {
      const clinics = (await api.get("/v1/clinics?limit=200")).items;
      const lists = await Promise.all(clinics.map((c) => api.get(`/v1/clinics/${c.id}/services`)
        .then((page) => page.items.filter((s) => s.active).map((s) => ({ ...s, clinic: c.name })))));
      this.services = lists.flat();
    } catch (err) {
      $("book-error").textContent = errorText(err);
    }
    this.render();
  }

  clearSlots() {
    this.slots = null;
    this.chosen = null;
    this.render();
  }

  async find() {
    $("book-error").textContent = "";
    $("book-done").textContent = "";
    const point = this.request.point;
    if (!point) { $("book-error").textContent = t("patient.request.needPoint"); return; }
    const service = $("book-service").value;
    if (!service) { $("book-error").textContent = t("patient.book.noServices"); return; }
    const day = $("book-date").value;
    const query = new URLSearchParams({ service_id: service, lat: point.lat, lon: point.lon, from: day, to: day });
    $("book-find").disabled = true;
    try {
      this.slots = (await api.get(`/v1/slots?${query}`)).items;
      this.chosen = null;
    } catch (err) {
      $("book-error").textContent = errorText(err);
    } finally {
      $("book-find").disabled = false;
    }
    this.render();
  }

  choose(slot) {
    this.chosen = slot;
    this.render();
    $("book-submit").focus();
  }

  async confirm() {
    $("book-error").textContent = "";
    const point = this.request.point;
    const slot = this.chosen;
    if (!slot || !point) return;
    const body = {
      service_id: $("book-service").value,
      slot: { doctor_id: slot.doctor_id, start: slot.start },
      address: $("book-address").value.trim(),
      lat: point.lat,
      lon: point.lon,
    };
    const symptoms = $("book-symptoms").value.trim();
    if (symptoms) body.symptoms = symptoms;
    // One key per booking the patient means (sent again after a lost answer: the same booking).
    const sent = JSON.stringify(body);
    if (!this.key || this.keyBody !== sent) {
      this.key = newIdempotencyKey();
      this.keyBody = sent;
    }
    $("book-submit").disabled = true;
    try {
      const booking = await api.post("/v1/bookings", body, { idempotencyKey: this.key });
      this.key = null;
      $("book-symptoms").value = "";
      $("book-done").textContent = t("patient.book.done", { date: booking.start.slice(0, 10), time: hhmm(booking.start) });
      this.clearSlots();
      this.onBooked(booking);
    } catch (err) {
      $("book-error").textContent = errorText(err);
      if (err.code === "slot_taken" || err.code === "daily_limit_reached") this.find();
    } finally {
      $("book-submit").disabled = false;
    }
  }

  render() {
    const select = $("book-service");
    const value = select.value;
    select.replaceChildren(...this.services.map((s) => h("option", { value: s.id },
      t("patient.book.serviceOption", { name: s.name, clinic: s.clinic, price: s.price, currency: s.currency, minutes: s.duration_min }))));
    if (value && this.services.some((s) => s.id === value)) select.value = value;
    if (!$("book-address").value && $("address").value) $("book-address").value = $("address").value;
    const list = $("book-slots");
    if (this.slots === null) list.replaceChildren();
    else if (this.slots.length === 0) list.replaceChildren(h("li", { class: "note" }, t("patient.book.noSlots")));
    else {
      list.replaceChildren(...this.slots.map((s) => h("li", {},
        h("button", {
          type: "button",
          class: this.chosen === s ? "slot chosen" : "slot",
          "aria-pressed": String(this.chosen === s),
          dataset: { start: s.start, doctor: s.doctor_id },
          onclick: () => this.choose(s),
        }, `${hhmm(s.start)} · ${s.doctor_name}`))));
    }
    const chosen = this.chosen;
    $("book-submit").hidden = !chosen;
    $("book-submit").textContent = chosen
      ? t("patient.book.confirm", { time: hhmm(chosen.start), doctor: chosen.doctor_name })
      : t("patient.book.submit");
  }
}
