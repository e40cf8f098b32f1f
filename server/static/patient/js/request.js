// "Call a doctor now": the address, the point (a tap on the map or the browser's location), the
// specialty and the symptoms; POST /v1/calls (urgency "urgent": a visit now).
import { errorText, label, onLanguageChange, t } from "/static/shared/i18n.js";
import { newIdempotencyKey } from "/static/shared/api.js";
import { api } from "./api.js";
import { $, h } from "./dom.js";

export const SPECIALTIES = ["therapist", "pediatrician", "surgeon"];

export class RequestForm {
  /** onCreated(call) once the server took the call. */
  constructor(map, markers, { onCreated }) {
    this.map = map;
    this.markers = markers;
    this.onCreated = onCreated;
    this.point = null; // {lat, lon}
    this.active = false;
    this.fillSpecialties();
    onLanguageChange(() => { this.fillSpecialties(); this.showPoint(); });
    map.on("click", (ev) => { if (this.active) this.setPoint(ev.latlng.lat, ev.latlng.lng, "map"); });
    $("locate").onclick = () => this.locate();
    $("request").onsubmit = (ev) => { ev.preventDefault(); this.submit(); };
  }

  fillSpecialties() {
    const select = $("specialty");
    const value = select.value || SPECIALTIES[0];
    select.replaceChildren(...SPECIALTIES.map((s) => h("option", { value: s }, label("common.specialty", s))));
    select.value = value;
  }

  show() {
    this.active = true;
    $("request").hidden = false;
    $("request-error").textContent = "";
    this.markers.setDoctor(null);
    this.markers.setPoint(this.point ? this.point.lat : null, this.point ? this.point.lon : null);
    this.showPoint();
  }

  hide() {
    this.active = false;
    $("request").hidden = true;
  }

  setPoint(lat, lon, how) {
    this.point = { lat, lon, how };
    this.markers.setPoint(lat, lon);
    this.showPoint();
  }

  showPoint() {
    const p = this.point;
    $("point-note").textContent = p
      ? t(p.how === "gps" ? "patient.request.pointGps" : "patient.request.pointMap", { lat: p.lat.toFixed(5), lon: p.lon.toFixed(5) })
      : t("patient.request.pointHint");
  }

  locate() {
    if (!navigator.geolocation) { $("request-error").textContent = t("patient.request.noGeolocation"); return; }
    $("request-error").textContent = "";
    $("point-note").textContent = t("patient.request.locating");
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        this.setPoint(pos.coords.latitude, pos.coords.longitude, "gps");
        this.map.setView([pos.coords.latitude, pos.coords.longitude], Math.max(this.map.getZoom(), 15));
      },
      (err) => {
        this.showPoint();
        $("request-error").textContent = t(err.code === 1 ? "patient.request.locationDenied" : "patient.request.locationFailed");
      },
      { enableHighAccuracy: true, timeout: 15_000, maximumAge: 60_000 },
    );
  }

  async submit() {
    $("request-error").textContent = "";
    if (!this.point) { $("request-error").textContent = t("patient.request.needPoint"); return; }
    const body = {
      address: $("address").value.trim(),
      lat: this.point.lat,
      lon: this.point.lon,
      urgency: "urgent",
      specialty: $("specialty").value,
    };
    const symptoms = $("symptoms").value.trim();
    if (symptoms) body.symptoms = symptoms;
    $("request-submit").disabled = true;
    try {
      // One key per request the patient means: sent again after a lost answer, it is the same call.
      // A changed form is another request (the server refuses a key sent again with another body).
      const sent = JSON.stringify(body);
      if (!this.idempotencyKey || this.idempotencyBody !== sent) {
        this.idempotencyKey = newIdempotencyKey();
        this.idempotencyBody = sent;
      }
      const call = await api.post("/v1/calls", body, { idempotencyKey: this.idempotencyKey });
      this.idempotencyKey = null;
      $("symptoms").value = "";
      this.onCreated(call);
    } catch (err) {
      $("request-error").textContent = errorText(err);
    } finally {
      $("request-submit").disabled = false;
    }
  }
}
