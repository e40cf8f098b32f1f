// A browser app's one WebSocket (/v1/ws, docs/protocol.md), shared by the console and the apps:
// reconnects by itself, resubscribes every channel with its last {offset, epoch} so missed events are
// recovered, and tells each channel's owner when they could not be (recovered: false) so it re-reads its
// state over REST.
import { t } from "/static/shared/i18n.js";

const PING_MS = 20_000; // the server closes a silent connection after 60 s
const REQUEST_TIMEOUT_MS = 10_000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
// The server allows 20 subscribes a second with bursts of 100 (realtime rate limits); stay below.
const SUBSCRIBE_BURST = 60;
const SUBSCRIBE_PER_S = 15;

export class Socket {
  /** getToken(): the access token; refreshToken(): a promise of a new one (after close 4401 or 4410). */
  constructor({ getToken, refreshToken }) {
    this.getToken = getToken;
    this.refreshToken = refreshToken;
    this.ws = null;
    this.state = "offline"; // "connecting" | "online" | "offline"
    this.channels = new Map(); // name -> {handler, onResync, position: {offset, epoch} | null, live}
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.nextRef = 1;
    this.attempt = 0;
    this.stopped = false;
    this.listeners = new Set();
    this.queue = []; // subscribe/unsubscribe frames waiting for rate tokens
    this.tokens = SUBSCRIBE_BURST;
    this.tokensAt = performance.now();
    this.drainTimer = null;
    this.frames = 0;
    /** Called on the server's "reannounce" frame (its live state was rebuilt): a doctor's app sends its
     * status and position again (docs/protocol.md). A dispatcher or patient has nothing to announce. */
    this.onReannounce = () => {};
  }

  /** fn(state, detail) on every change of the connection state. */
  onState(fn) { this.listeners.add(fn); fn(this.state, {}); }

  _setState(state, detail = {}) {
    this.state = state;
    for (const fn of this.listeners) fn(state, detail);
  }

  start() {
    this.stopped = false;
    this._connect();
    addEventListener("online", () => { if (this.state === "offline") this._connect(); });
    // The browser lost its network: say so now and drop the socket, rather than wait for a close
    // handshake that cannot complete (it can take a minute to time out).
    addEventListener("offline", () => {
      const ws = this.ws;
      if (!ws) return;
      this._closed(ws, { code: 1006, reason: "browser offline" });
      try { ws.close(); } catch { /* already closing */ }
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "signed out");
  }

  _connect() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.retryTimer);
    this._setState("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws?token=${encodeURIComponent(this.getToken())}`);
    this.ws = ws;
    ws.onmessage = (msg) => this._frame(JSON.parse(msg.data));
    ws.onclose = (ev) => this._closed(ws, ev);
  }

  async _closed(ws, ev) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    this.ws = null;
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(Object.assign(new Error(t("common.error.connection_lost")), { code: "connection_lost" })); }
    this.pending.clear();
    this.queue = [];
    for (const ch of this.channels.values()) ch.live = false;
    if (this.stopped) { this._setState("offline", { code: ev.code }); return; }
    if (ev.code === 4401 || ev.code === 4410) {  // 4410: token revoked; refreshing fails, signing out
      try { await this.refreshToken(); } catch { this._setState("offline", { code: ev.code, reason: "signed out" }); return; }
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this._setState("offline", { code: ev.code, reason: ev.reason, retryAt: Date.now() + delay });
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _frame(frame) {
    this.frames += 1;
    switch (frame.op) {
      case "hello":
        this.attempt = 0;
        this.serverOffset = frame.server_time - Date.now();
        this._setState("online", { hello: frame });
        this.pingTimer = setInterval(() => this.send({ op: "ping" }), PING_MS);
        for (const name of this.channels.keys()) this._sendSubscribe(name);
        return;
      case "event": {
        const ch = this.channels.get(frame.ch);
        if (!ch) return;
        if (frame.offset) ch.position = { offset: frame.offset, epoch: frame.epoch };
        ch.handler(frame.type, frame.data, frame);
        return;
      }
      case "subscribed": {
        const ch = this.channels.get(frame.ch);
        if (ch) {
          ch.live = true;
          const hadPosition = ch.position !== null;
          ch.position = frame.position || ch.position;
          // Without `since` the channel starts "now": whatever happened before is read over REST.
          if (!frame.recovered && (hadPosition || ch.resyncOnStart)) ch.onResync(frame.reason || "new");
        }
        break;
      }
      case "error":
        if (frame.ref === undefined) console.warn("server refused a frame", frame);
        break;
      case "reannounce":
        // Sent to doctors' apps after the server's live state was rebuilt (docs/protocol.md); channels
        // recover on their own.
        this.onReannounce(frame);
        return;
      default:
        break;
    }
    if (frame.ref !== undefined && this.pending.has(frame.ref)) {
      const p = this.pending.get(frame.ref);
      this.pending.delete(frame.ref);
      clearTimeout(p.timer);
      if (frame.op === "error") p.reject(Object.assign(new Error(frame.message), { code: frame.code, field: frame.field }));
      else p.resolve(frame);
    }
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  /** A frame with a ref; resolves with the ack, rejects with the error frame (err.code). */
  request(op, fields = {}) {
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      if (!this.send({ op, ref, ...fields })) { reject(Object.assign(new Error(t("common.error.offline")), { code: "offline" })); return; }
      const timer = setTimeout(() => { this.pending.delete(ref); reject(Object.assign(new Error(t("common.error.no_answer")), { code: "no_answer" })); }, REQUEST_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
    });
  }

  /**
   * Follow a channel: handler(type, data, frame) for each event; onResync(reason) when events may
   * have been missed and could not be recovered (re-read over REST). resyncOnStart: also call it
   * after the first subscription (channels whose state is read over REST only then).
   */
  subscribe(name, handler, { onResync = () => {}, resyncOnStart = false } = {}) {
    if (this.channels.has(name)) return;
    this.channels.set(name, { handler, onResync, resyncOnStart, position: null, live: false });
    this._sendSubscribe(name);
  }

  unsubscribe(name) {
    if (!this.channels.delete(name)) return;
    this.queue = this.queue.filter((f) => f.ch !== name || f.op !== "subscribe");
    this._enqueue({ op: "unsubscribe", ch: name });
  }

  has(name) { return this.channels.has(name); }

  _sendSubscribe(name) {
    const ch = this.channels.get(name);
    const frame = { op: "subscribe", ch: name };
    if (ch.position && ch.position.epoch) frame.since = ch.position;
    this._enqueue(frame);
  }

  _enqueue(frame) {
    this.queue.push(frame);
    this._drain();
  }

  _drain() {
    const now = performance.now();
    this.tokens = Math.min(SUBSCRIBE_BURST, this.tokens + ((now - this.tokensAt) / 1000) * SUBSCRIBE_PER_S);
    this.tokensAt = now;
    while (this.queue.length && this.tokens >= 1) {
      if (!this.send({ ...this.queue[0], ref: this.nextRef++ })) { this.queue = []; return; }
      this.queue.shift();
      this.tokens -= 1;
    }
    if (this.queue.length && !this.drainTimer) {
      this.drainTimer = setTimeout(() => { this.drainTimer = null; this._drain(); }, 1000 / SUBSCRIBE_PER_S);
    }
  }
}
