// The map of the patient app and the tracking page: the configured tiles (the console's settings),
// the call's point and the doctor's marker.
import * as L from "/static/vendor/leaflet/leaflet-src.esm.js";
import { t } from "/static/shared/i18n.js";

export { L };

/** The page's settings, written by the server into <script id=...> (server/routes/patient_app.py). */
export function readConfig(id) {
  const block = document.getElementById(id);
  return block ? JSON.parse(block.textContent) : { tileUrl: "", view: { lat: 0, lon: 0, zoom: 2 } };
}

/** A Leaflet map in `element` at the configured view. */
export function createMap(element, config) {
  const { lat, lon, zoom } = config.view;
  const map = L.map(element, { zoomControl: true }).setView([lat, lon], zoom);
  if (config.tileUrl) {
    L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.tileAttribution || "" }).addTo(map);
  }
  return map;
}

/** The call's point (a blue dot) and the doctor (a green dot with a ring), moved by set*(). */
export class CallMarkers {
  constructor(map) {
    this.map = map;
    this.point = null;
    this.doctor = null;
  }

  setPoint(lat, lon) {
    if (lat === null || lat === undefined) { if (this.point) this.point.remove(); this.point = null; return; }
    if (!this.point) {
      this.point = L.circleMarker([lat, lon], { radius: 9, color: "#1f6feb", weight: 3, fillColor: "#fff", fillOpacity: 1 }).addTo(this.map);
      this.point.bindTooltip(t("patient.map.here"));
    } else {
      this.point.setLatLng([lat, lon]);
    }
  }

  setDoctor(lat, lon) {
    if (lat === null || lat === undefined) { if (this.doctor) this.doctor.remove(); this.doctor = null; return; }
    const first = !this.doctor;
    if (first) {
      this.doctor = L.circleMarker([lat, lon], { radius: 10, color: "#1b5e20", weight: 3, fillColor: "#43a047", fillOpacity: 1 }).addTo(this.map);
      this.doctor.bindTooltip(t("patient.map.doctor"));
    } else {
      this.doctor.setLatLng([lat, lon]);
    }
    if (first && this.point) this.map.fitBounds(L.latLngBounds([this.point.getLatLng(), this.doctor.getLatLng()]), { padding: [40, 40], maxZoom: 16 });
  }
}
