// Doctors on the map, from the map channels' per-cell batches (docs/protocol.md, "map.doctors"):
// one canvas circle per doctor, coloured by state, moved in place when a new batch arrives.
import * as L from "/static/vendor/leaflet/leaflet-src.esm.js";
import { label } from "/static/shared/i18n.js";

export const STATE_COLOURS = {
  available: "#2e7d32",
  offered: "#f9a825",
  busy: "#1565c0",
  paused: "#6a1b9a",
  offline: "#9e9e9e",
};
const STALE_MS = 60_000; // a position this old is greyed out (TOT_CANDIDATE_MAX_AGE's default)

export class DoctorsLayer {
  /** onClick(doctorId, latlng) when a doctor's circle is clicked. */
  constructor(map, { onClick = () => {} } = {}) {
    this.map = map;
    this.renderer = L.canvas({ padding: 0.2 });
    this.group = L.layerGroup().addTo(map);
    this.doctors = new Map(); // id -> {marker, cell, lat, lon, state, ts}
    this.cells = new Map(); // cell -> Set of ids
    this.onClick = onClick;
    this.highlighted = null;
    this.stats = { batches: 0, entries: 0, maxEntries: 0, applyMs: 0, maxApplyMs: 0, lastApplyMs: 0 };
  }

  _style(d) {
    const stale = Date.now() - d.ts > STALE_MS;
    const colour = stale ? STATE_COLOURS.offline : STATE_COLOURS[d.state] || STATE_COLOURS.offline;
    const strong = this.highlighted === d.id;
    return {
      radius: strong ? 10 : 6,
      color: strong ? "#000" : "#fff",
      weight: strong ? 3 : 1,
      fillColor: colour,
      fillOpacity: stale ? 0.5 : 0.95,
    };
  }

  /** A cell's complete list of doctors: [[id, lat, lon, state, ts], ...]. Doctors that were in the
   * cell and are not in the list have left it (unless another cell's batch already took them). */
  applyBatch(cell, entries) {
    const started = performance.now();
    const previous = this.cells.get(cell) || new Set();
    const now = new Set();
    for (const [id, lat, lon, state, ts] of entries) {
      now.add(id);
      this._upsert(id, lat, lon, state, ts, cell);
    }
    for (const id of previous) {
      if (!now.has(id) && this.doctors.get(id)?.cell === cell) this._remove(id);
    }
    this.cells.set(cell, now);
    const took = performance.now() - started;
    Object.assign(this.stats, {
      batches: this.stats.batches + 1,
      entries: this.stats.entries + entries.length,
      maxEntries: Math.max(this.stats.maxEntries, entries.length),
      applyMs: this.stats.applyMs + took,
      maxApplyMs: Math.max(this.stats.maxApplyMs, took),
      lastApplyMs: took,
    });
  }

  /** A position from a call channel (doctor.position), between two batches. */
  move(id, lat, lon, ts) {
    const d = this.doctors.get(id);
    if (d) this._upsert(id, lat, lon, d.state, ts, d.cell);
  }

  /** Forget a cell we no longer watch, and its doctors. */
  dropCell(cell) {
    for (const id of this.cells.get(cell) || []) {
      if (this.doctors.get(id)?.cell === cell) this._remove(id);
    }
    this.cells.delete(cell);
  }

  _upsert(id, lat, lon, state, ts, cell) {
    let d = this.doctors.get(id);
    if (!d) {
      d = { id, lat, lon, state, ts, cell };
      d.marker = L.circleMarker([lat, lon], { renderer: this.renderer, ...this._style(d) });
      d.marker.on("click", () => this.onClick(id, d.marker.getLatLng()));
      d.marker.bindTooltip(() => `${id.slice(0, 8)} · ${label("common.doctorState", d.state)}`);
      this.group.addLayer(d.marker);
      this.doctors.set(id, d);
      return;
    }
    const moved = d.lat !== lat || d.lon !== lon;
    const restyle = d.state !== state || (Date.now() - d.ts > STALE_MS) !== (Date.now() - ts > STALE_MS);
    if (d.cell !== cell && d.cell) this.cells.get(d.cell)?.delete(id);
    Object.assign(d, { lat, lon, state, ts, cell });
    if (moved) d.marker.setLatLng([lat, lon]);
    if (restyle) d.marker.setStyle(this._style(d));
  }

  _remove(id) {
    const d = this.doctors.get(id);
    if (!d) return;
    this.group.removeLayer(d.marker);
    this.doctors.delete(id);
  }

  /** Draw this doctor bigger (the selected call's doctor); null for none. */
  highlight(id) {
    const before = this.highlighted;
    this.highlighted = id;
    for (const other of [before, id]) {
      const d = other && this.doctors.get(other);
      if (d) { d.marker.setStyle(this._style(d)); d.marker.bringToFront(); }
    }
  }

  get(id) { return this.doctors.get(id); }

  /** {state: count} of the doctors on the map. */
  counts() {
    const counts = {};
    for (const d of this.doctors.values()) counts[d.state] = (counts[d.state] || 0) + 1;
    return counts;
  }
}
