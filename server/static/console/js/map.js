// The base map: zone polygons from the database as the base layer (works with no internet), an
// optional tile layer when the deployment configures one (TOT_CONSOLE_TILE_URL), and a legend.
import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { api } from "./api.js";
import { config } from "./config.js";
import { STATE_COLOURS } from "./doctors-layer.js";
import { h } from "./dom.js";

export { L };

/** The Leaflet map in `element`, at the configured first view; zones are drawn once loaded. */
export function createMap(element) {
  const { lat, lon, zoom } = config.view;
  const map = L.map(element, { preferCanvas: true, zoomControl: true, worldCopyJump: false }).setView([lat, lon], zoom);
  if (config.tileUrl) {
    L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.tileAttribution || "" }).addTo(map);
  }
  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () =>
    h("div", { class: "legend" },
      Object.entries(STATE_COLOURS).map(([state, colour]) =>
        h("div", {}, h("i", { style: `background:${colour}` }), state)));
  legend.addTo(map);
  return map;
}

/** Draw every service zone (GET /v1/zones) and fit the view to them when there are any. */
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
  if (items.length) map.fitBounds(layer.getBounds(), { padding: [10, 10] });
  return items.length;
}
