// The agenda: the doctor's booked visits today and the next days, in the doctor's own time zone
// (GET /v1/doctors/me/agenda), and the secret calendar link for a phone's or a desktop's calendar
// (POST /v1/doctors/me/calendar-token: making a new one kills the old address). docs/doctor-app.md.
import { errorText, label, language, t } from "/static/shared/i18n.js";
import { h } from "./dom.js";

const DAYS = 7;

/** "Sat, 5 Dec" for a YYYY-MM-DD date, in the app's language (the date as written, whatever the zone). */
function dayName(date) {
  return new Date(`${date}T12:00:00Z`).toLocaleDateString(language(), { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
}

export class Agenda {
  /** el: the panel; api: the REST client. */
  constructor(el, { api }) {
    this.el = el;
    this.api = api;
    this.agenda = null;
    this.link = null; // the feed's full URL once made (the server shows a token only once)
    this.error = "";
    this.rotating = false;
    this.render();
  }

  async load() {
    try {
      this.agenda = await this.api.get(`/v1/doctors/me/agenda?days=${DAYS}`);
      this.error = "";
    } catch (err) {
      this.error = errorText(err);
    }
    this.render();
  }

  async makeLink() {
    // A new link kills the old one (a subscribed calendar stops updating): a second press to be sure.
    if (this.link && !this.rotating) { this.rotating = true; this.render(); return; }
    this.rotating = false;
    try {
      const made = await this.api.post("/v1/doctors/me/calendar-token", {});
      this.link = new URL(made.path, location.origin).href;
      this.error = "";
    } catch (err) {
      this.error = errorText(err);
    }
    this.render();
  }

  day(date, visits) {
    return h("li", { class: "agenda-day", dataset: { date } },
      h("h3", {}, dayName(date)),
      visits.length === 0 ? h("p", { class: "note" }, t("doctor.agenda.free")) :
        h("ol", { class: "agenda-visits" }, ...visits.map((v) => h("li", {
          class: v.cancelled ? "agenda-visit cancelled" : "agenda-visit",
          dataset: { call: v.call_id, status: v.cancelled ? "cancelled" : v.status },
        },
        h("strong", {}, `${v.start.slice(11, 16)}–${v.end.slice(11, 16)}`), " ",
        h("span", { class: "service" }, v.service.name), " · ",
        h("span", { class: "patient" }, v.patient_first_name), " · ",
        h("span", { class: "address" }, v.address),
        v.cancelled ? h("span", { class: "badge" }, label("common.callStatus", "cancelled")) : null))));
  }

  render() {
    const a = this.agenda;
    const byDay = new Map();
    if (a) {
      const first = new Date(`${a.from}T00:00:00Z`);
      for (let i = 0; i < a.days; i += 1) {
        byDay.set(new Date(first.getTime() + i * 86_400_000).toISOString().slice(0, 10), []);
      }
      for (const v of a.items) {
        const date = v.start.slice(0, 10);
        if (byDay.has(date)) byDay.get(date).push(v);
      }
    }
    // Only the days with visits, and today even when free.
    const days = [...byDay.entries()].filter(([date, visits], i) => i === 0 || visits.length > 0);
    this.el.replaceChildren(
      h("h2", { id: "agenda-title" }, t("doctor.agenda.title")),
      a ? h("p", { class: "note" }, t("doctor.agenda.zone", { zone: a.time_zone })) : null,
      h("ul", { id: "agenda-days", class: "agenda-days" }, ...days.map(([date, visits]) => this.day(date, visits))),
      h("div", { class: "line" },
        h("button", { type: "button", id: "agenda-refresh", onclick: () => this.load() }, t("doctor.agenda.refresh")),
        h("button", { type: "button", id: "calendar-link", onclick: () => this.makeLink() },
          t(!this.link ? "doctor.agenda.link" : this.rotating ? "doctor.agenda.rotateConfirm" : "doctor.agenda.rotate"))),
      this.link ? h("label", { class: "calendar-url" }, h("span", {}, t("doctor.agenda.linkLabel")), " ",
        h("input", { id: "calendar-url", readonly: true, value: this.link })) : null,
      this.link ? h("p", { class: "note" }, t("doctor.agenda.linkHelp")) : null,
      h("p", { id: "agenda-error", class: "error", role: "alert" }, this.error),
    );
  }
}
