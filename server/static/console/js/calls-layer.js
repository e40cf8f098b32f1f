// Active calls on the map: a diamond coloured by urgency, outlined by status; the selected call's
// doctor is joined to it by a line.
import * as L from "/static/vendor/leaflet/leaflet-src.esm.js";
import { label } from "/static/shared/i18n.js";

const URGENCY_COLOURS = { emergency: "#c62828", urgent: "#ef6c00", planned: "#1565c0" };
const STATUS_OUTLINE = { escalated: "#000", searching: "#ef6c00", created: "#ef6c00", offered: "#f9a825" };

export class CallsLayer {
  constructor(map, calls, doctors, { onSelect }) {
    this.map = map;
    this.calls = calls;
    this.doctors = doctors;
    this.onSelect = onSelect;
    this.group = L.layerGroup().addTo(map);
    this.markers = new Map(); // id -> marker
    this.selected = null;
    this.link = L.polyline([], { color: "#1d2430", weight: 2, dashArray: "6 4", interactive: false }).addTo(map);
    calls.onChange(() => this.render());
  }

  _icon(call) {
    const outline = STATUS_OUTLINE[call.status] || "#2e7d32";
    const size = call.id === this.selected ? 22 : 16;
    return L.divIcon({
      className: "",
      iconSize: [size, size],
      html: `<div class="call-marker" data-call="${call.id}" data-status="${call.status}" style="width:${size}px;height:${size}px;background:${URGENCY_COLOURS[call.urgency] || "#555"};border-color:${outline}"></div>`,
    });
  }

  render() {
    const seen = new Set();
    for (const call of this.calls.all()) {
      seen.add(call.id);
      let marker = this.markers.get(call.id);
      const key = `${call.status}|${call.urgency}|${call.id === this.selected}`;
      if (!marker) {
        marker = L.marker([call.lat, call.lon], { icon: this._icon(call), zIndexOffset: 500 });
        marker.on("click", () => this.onSelect(call.id));
        marker.bindTooltip(() => `${call.address} · ${label("common.callStatus", this.calls.get(call.id)?.status || call.status)}`);
        marker.key = key;
        this.group.addLayer(marker);
        this.markers.set(call.id, marker);
      } else if (marker.key !== key) {
        marker.setIcon(this._icon(call));
        marker.key = key;
      }
    }
    for (const [id, marker] of this.markers) {
      if (!seen.has(id)) { this.group.removeLayer(marker); this.markers.delete(id); }
    }
    this.updateLink();
  }

  select(id) {
    this.selected = id;
    this.render();
  }

  /** The line from the selected call to its doctor, where the map knows the doctor. */
  updateLink() {
    const call = this.selected && this.calls.get(this.selected);
    const doctor = call && call.doctor_id && this.doctors.get(call.doctor_id);
    this.link.setLatLngs(doctor ? [[call.lat, call.lon], [doctor.lat, doctor.lon]] : []);
  }
}
