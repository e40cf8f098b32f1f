// Which map channels to follow: the H3 cells covering the view (GET /v1/map/cells), re-asked after
// each pan or zoom; new cells are subscribed, cells out of view unsubscribed and their doctors dropped.
import { api, ApiError } from "./api.js";

const SETTLE_MS = 250;

export class MapCells {
  constructor(map, socket, doctors, { onNote = () => {} } = {}) {
    this.map = map;
    this.socket = socket;
    this.doctors = doctors;
    this.onNote = onNote;
    this.cells = new Set();
    this.timer = null;
    this.generation = 0;
    map.on("moveend", () => this.schedule());
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.update(), SETTLE_MS);
  }

  async update() {
    const generation = ++this.generation;
    const b = this.map.getBounds();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    const bbox = [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -85, 85), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -85, 85)]
      .map((v) => v.toFixed(5)).join(",");
    let wanted;
    try {
      wanted = new Set((await api.get(`/v1/map/cells?bbox=${bbox}`)).cells);
      this.onNote("");
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== "too_many_cells") throw err;
      wanted = new Set();
      this.onNote("console.map.zoomIn");
    }
    if (generation !== this.generation) return; // a newer view superseded this one
    for (const cell of this.cells) {
      if (!wanted.has(cell)) {
        this.socket.unsubscribe(`map:${cell}`);
        this.doctors.dropCell(cell);
      }
    }
    for (const cell of wanted) {
      if (!this.cells.has(cell)) {
        this.socket.subscribe(`map:${cell}`, (type, data) => {
          if (type === "map.doctors" && this.cells.has(data.cell)) this.doctors.applyBatch(data.cell, data.doctors);
        });
      }
    }
    this.cells = wanted;
  }
}
