// The page's settings, written by the server into <script id="doctor-config"> (server/routes/doctor_app.py).

const block = document.getElementById("doctor-config");

/** {tileUrl, tileAttribution, staleAfterS, heartbeatS, forwardMs} */
export const config = block
  ? JSON.parse(block.textContent)
  : { tileUrl: "", tileAttribution: "", staleAfterS: 30, heartbeatS: 15, forwardMs: 1000 };
