// The page's settings, written by the server into <script id="console-config"> (server/routes/console.py).

const block = document.getElementById("console-config");

/** {tileUrl, tileAttribution, view: {lat, lon, zoom}, mapResolution, maxMapCells} */
export const config = block ? JSON.parse(block.textContent) : { tileUrl: "", view: { lat: 0, lon: 0, zoom: 2 } };
