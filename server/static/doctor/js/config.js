// The page's settings, written by the server into <script id="doctor-config"> (server/routes/doctor_app.py).

const block = document.getElementById("doctor-config");

/** {tileUrl, tileAttribution, view: {lat, lon, zoom}, staleAfterS, heartbeatS} */
export const config = block
  ? JSON.parse(block.textContent)
  : { tileUrl: "", tileAttribution: "", view: { lat: 0, lon: 0, zoom: 2 }, staleAfterS: 30, heartbeatS: 15 };
