// The base map: a street map (OpenStreetMap's standard tiles by default, TOT_CONSOLE_TILE_URL; none
// when switched off), the zone polygons from the database over it (the base layer when there are no
// tiles: works with no internet), a legend, and the first view: where the doctors are.
import * as L from "/static/vendor/leaflet/leaflet-src.esm.js";
import { label, onLanguageChange, t } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { config } from "./config.js";
import { STATE_COLOURS } from "./doctors-layer.js";
import { h } from "./dom.js";

export { L };

const EXTENT_EVERY_MS = 3000; // while nothing shows where the doctors are, ask again this often
// Not animated: the end of a zoom animation re-sets the view it aimed at, undoing a pan the dispatcher
// (or a call picked in the queue) began meanwhile.
const FIT = { padding: [40, 40], maxZoom: 15, animate: false };

/** The Leaflet map in `element`, at the configured view until firstView() moves it. */
export function createMap(element) {
  const { lat, lon, zoom } = config.view;
  const map = L.map(element, { preferCanvas: true, zoomControl: true, worldCopyJump: false }).setView([lat, lon], zoom);
  map.tileErrors = 0; // tiles that did not load (no internet, tile server down): the page works on
  if (config.tileUrl) {
    map.baseLayer = L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.tileAttribution || "" }).addTo(map);
    map.baseLayer.on("tileerror", () => { map.tileErrors += 1; });
  }
  const legend = L.control({ position: "bottomleft" });
  const box = h("div", { class: "legend" });
  const fill = () => box.replaceChildren(...Object.entries(STATE_COLOURS).map(([state, colour]) =>
    h("div", {}, h("i", { style: `background:${colour}` }), label("common.doctorState", state))));
  legend.onAdd = () => { fill(); return box; };
  legend.addTo(map);
  onLanguageChange(fill);
  return map;
}

/** Draw every service zone (GET /v1/zones); returns their number and bounds (null when none). */
export async function drawZones(map) {
  const { items } = await api.get("/v1/zones");
  const layer = L.geoJSON(
    items.map((z) => ({ type: "Feature", geometry: z.area, properties: { code: z.code, name: z.name } })),
    {
      style: { color: "#5b6678", weight: 1, fillColor: "#ffffff", fillOpacity: config.tileUrl ? 0.05 : 0.55 },
      interactive: false,
    },
  ).addTo(map);
  layer.bringToBack();
  return { count: items.length, bounds: items.length ? layer.getBounds() : null };
}

/**
 * Open where the doctors are: the zones' bounds when there are zones, else the live doctors' (GET
 * /v1/map/extent), else the configured view. While neither zones nor doctors are known (a demo still
 * starting its fleet), ask again every few seconds until the doctors appear or the map leaves the
 * configured view (the dispatcher, or a script, moved it). Resolves with how the view was chosen:
 * "zones", "doctors" or "configured".
 */
export async function firstView(map, zoneBounds, { onChange = () => {} } = {}) {
  if (zoneBounds) {
    map.fitBounds(zoneBounds, FIT);
    return "zones";
  }
  const home = L.latLng(config.view.lat, config.view.lon);
  const untouched = () => map.getZoom() === config.view.zoom && map.getCenter().distanceTo(home) < 1;
  const fitDoctors = async () => {
    const { bbox } = await api.get("/v1/map/extent");
    if (!bbox || !untouched()) return false;
    const [west, south, east, north] = bbox;
    map.fitBounds([[south, west], [north, east]], FIT);
    return true;
  };
  if (await fitDoctors()) return "doctors";
  if (!untouched()) return "configured";
  const timer = setInterval(async () => {
    if (!untouched()) { clearInterval(timer); return; } // the dispatcher took over
    try {
      if (await fitDoctors()) { clearInterval(timer); onChange("doctors"); }
    } catch (err) {
      console.warn("map extent", err);
    }
  }, EXTENT_EVERY_MS);
  return "configured";
}

/** The note over the map for a catalogue key (or none for ""), re-translated on a language switch. */
export function mapNote(element) {
  let key = "";
  const show = () => { element.hidden = !key; element.textContent = key ? t(key) : ""; };
  onLanguageChange(show);
  return (next) => { key = next; show(); };
}
