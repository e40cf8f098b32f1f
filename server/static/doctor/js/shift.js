// Going on shift: the doctor's chosen status (doctor.status frames), the browser's location streamed
// while on shift (watchPosition), and the screen kept awake (Screen Wake Lock) where the browser allows.
import { errorText, label, t } from "/static/shared/i18n.js";
import { config } from "./config.js";

const STORE = "tot-doctor-shift"; // the status the doctor chose, resumed after a reload
const ON_SHIFT = new Set(["available", "paused"]);
const TICK_MS = 1000;

/** The screen wake lock: "off", "on", "unsupported" or "refused" (battery saver, hidden page...). */
class WakeLock {
  constructor(onChange) {
    this.lock = null;
    this.wanted = false;
    this.state = "off";
    this.onChange = onChange;
    // A wake lock is released whenever the page is hidden; take it again when it is shown.
    document.addEventListener("visibilitychange", () => {
      if (this.wanted && document.visibilityState === "visible" && !this.lock) this.acquire();
    });
  }

  _set(state) { this.state = state; this.onChange(); }

  async acquire() {
    this.wanted = true;
    if (!("wakeLock" in navigator)) { this._set("unsupported"); return; }
    if (this.lock) return;
    try {
      const lock = await navigator.wakeLock.request("screen");
      this.lock = lock;
      lock.addEventListener("release", () => { if (this.lock === lock) { this.lock = null; this._set(this.wanted ? "refused" : "off"); } });
      if (!this.wanted) { await lock.release(); return; }
      this._set("on");
    } catch {
      this._set("refused");
    }
  }

  async release() {
    this.wanted = false;
    const lock = this.lock;
    this.lock = null;
    if (lock) await lock.release().catch(() => {});
    this._set("off");
  }
}

export class Shift {
  /** els: {buttons: [button], serverStatus, locationState, locationHelp, wakeState, error}. */
  constructor(socket, els) {
    this.socket = socket;
    this.els = els;
    this.wanted = localStorage.getItem(STORE) || "offline";
    this.serverStatus = null; // what the server last said (doctor.status events, acks)
    this.watchId = null;
    this.fix = null; // the last fix: {lat, lon, acc, heading, speed, ts} (ts: the device's epoch ms)
    this.sentAt = 0;
    this.location = "off"; // off | waiting | ok | stale | denied | unavailable | unsupported
    this.sent = 0; // fixes sent (tests)
    this.wake = new WakeLock(() => this.render());
    /** "offered" or "busy" while an offer or a call holds the doctor (the server's doctor.status events
     * carry the availability the doctor chose, not these), else null. Set by the app. */
    this.activity = () => null;
    this.onFix = () => {}; // fn(fix) after each new position (the visit's map)
    for (const button of els.buttons) button.addEventListener("click", () => this.set(button.dataset.status));
    setInterval(() => this._tick(), TICK_MS);
  }

  get onShift() { return ON_SHIFT.has(this.wanted); }

  /** Resume the shift chosen before a reload. */
  resume() {
    if (this.onShift) this._startShift();
    this.render();
  }

  /** The doctor picked `status` (available, paused or offline); resolves once the server answered. */
  set(status) {
    this.wanted = status;
    localStorage.setItem(STORE, status);
    if (this.onShift) this._startShift();
    else this._stopShift();
    const sent = this.sendStatus();
    this.render();
    return sent;
  }

  _startShift() {
    this._watch();
    this.wake.acquire();
  }

  _stopShift() {
    if (this.watchId !== null) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
    this.location = "off";
    this.wake.release();
  }

  _watch() {
    if (this.watchId !== null) return;
    if (!("geolocation" in navigator)) { this.location = "unsupported"; this.render(); return; }
    if (this.location === "off") this.location = "waiting";
    this.watchId = navigator.geolocation.watchPosition(
      (pos) => this._position(pos),
      (err) => this._positionError(err),
      { enableHighAccuracy: true, maximumAge: 0, timeout: 60_000 },
    );
  }

  _position(pos) {
    const c = pos.coords;
    this.fix = {
      lat: c.latitude,
      lon: c.longitude,
      acc: Math.min(10_000, Math.max(0, c.accuracy || 0)),
      heading: Number.isFinite(c.heading) ? c.heading : null,
      speed: Number.isFinite(c.speed) ? c.speed : null,
      ts: pos.timestamp || Date.now(),
    };
    this.location = "ok";
    this.sendFix(false);
    this.onFix(this.fix);
    this.render();
  }

  _positionError(err) {
    if (err.code === err.PERMISSION_DENIED) {
      // No more positions will come: stop watching until the doctor allows it and goes on shift again.
      navigator.geolocation.clearWatch(this.watchId);
      this.watchId = null;
      this.location = "denied";
    } else if (err.code === err.POSITION_UNAVAILABLE) {
      this.location = "unavailable";
    } // a timeout: the watch goes on, and the age of the last fix says whether it is stale
    this.render();
  }

  /** Send the last fix; `now` stamps it with the current time (a re-announce, a heartbeat). */
  sendFix(now) {
    const fix = this.fix;
    if (!fix || !this.onShift) return false;
    // The server checks ts against its own clock: correct the phone's clock by the offset hello gave.
    const ts = Math.round((now ? Date.now() : fix.ts) + (this.socket.serverOffset || 0));
    const frame = { op: "location", lat: fix.lat, lon: fix.lon, acc: fix.acc, ts };
    if (fix.heading !== null && fix.heading >= 0 && fix.heading <= 360) frame.heading = fix.heading;
    if (fix.speed !== null && fix.speed >= 0 && fix.speed <= 100) frame.speed = fix.speed;
    if (!this.socket.send(frame)) return false;
    this.sentAt = Date.now();
    this.sent += 1;
    this._trail(ts);
    return true;
  }

  /** The server forwards to the patient one fix per `forwardMs` of fix time and drops the ones between
   * (they still reach the live index for dispatch). After a dropped fix, send the latest one again,
   * stamped now, once that time has passed: the patient then sees where the doctor stopped, not where
   * they were a moment before, until the next heartbeat. */
  _trail(ts) {
    const gap = config.forwardMs || 0;
    if (this.forwardedTs === undefined || ts - this.forwardedTs >= gap) {
      this.forwardedTs = ts;
      clearTimeout(this.trailTimer);
      this.trailTimer = null;
      return;
    }
    if (this.trailTimer) return;
    this.trailTimer = setTimeout(() => {
      this.trailTimer = null;
      if (this.location === "ok") this.sendFix(true);
    }, this.forwardedTs + gap - ts + 20);
  }

  /** Tell the server the chosen status (the doctor's choice; `auto`: a reconnect or a re-announce). */
  async sendStatus(auto = false) {
    const status = this.wanted;
    if (!auto) this.els.error.textContent = "";
    try {
      const ack = await this.socket.request("doctor.status", { status });
      this.serverStatus = ack.status || status;
    } catch (err) {
      // "forbidden" while offered or busy is expected after a reconnect: the server holds the doctor
      // for a call and says on doctor:<id> when it lets go.
      if (!auto) this.els.error.textContent = errorText(err);
    }
    this.render();
  }

  /** The socket is (back) online, or the server rebuilt its live state: where the phone is now, then
   * the chosen status. A stale fix is not passed off as a new one. */
  reannounce() {
    if (!this.onShift) return;
    if (this.location === "ok") this.sendFix(true);
    this.sendStatus(true);
  }

  /** A doctor.status event from the server. */
  serverChanged(status) {
    this.serverStatus = status;
    this.render();
  }

  _tick() {
    const shown = this.activity() || this.serverStatus || "";
    if (shown !== this.els.serverStatus.dataset.status) this.render();
    if (!this.onShift || !this.fix || this.location === "denied") return;
    const age = Date.now() - this.fix.ts;
    const stale = age > config.staleAfterS * 1000;
    if (stale !== (this.location === "stale")) {
      this.location = stale ? "stale" : "ok";
      this.render();
    }
    // watchPosition fires on movement only: re-send a fresh fix now and then for a doctor standing still.
    if (!stale && Date.now() - this.sentAt > config.heartbeatS * 1000) this.sendFix(true);
  }

  render() {
    const els = this.els;
    for (const button of els.buttons) button.setAttribute("aria-pressed", String(button.dataset.status === this.wanted));
    const shown = this.activity() || this.serverStatus;
    els.serverStatus.textContent = shown ? t("doctor.shift.server", { status: label("common.doctorState", shown) }) : "";
    els.serverStatus.dataset.status = shown || "";
    els.locationState.dataset.state = this.location;
    const accuracy = this.fix && this.location === "ok" ? Math.round(this.fix.acc) : 0;
    els.locationState.textContent = t(`doctor.location.${this.location}`, { acc: accuracy });
    const help = ["denied", "stale", "unavailable", "unsupported"].includes(this.location) && this.onShift;
    els.locationHelp.hidden = !help;
    els.locationHelp.textContent = help ? t(`doctor.location.help.${this.location}`) : "";
    els.wakeState.dataset.state = this.wake.state;
    els.wakeState.textContent = this.onShift ? t(`doctor.wake.${this.wake.state}`) : "";
    els.wakeState.hidden = !this.onShift;
  }
}
