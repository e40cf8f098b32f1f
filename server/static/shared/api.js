// REST client shared by the browser apps: bearer tokens kept in the browser's storage, one refresh and
// retry on an expired access token. Each app makes its own with createApi (its storage key and roles).
import { t } from "/static/shared/i18n.js";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || t("common.error.http_error", { status }));
    this.status = status;
    this.code = error.code || "http_error";
    this.body = body;
  }
}

class Api {
  /**
   * store: the storage key; storage: sessionStorage (the console: a shared dispatch PC) or
   * localStorage (a person's own phone); roles: the roles this app signs in; roleErrorKey: the
   * catalogue key of the message for any other role.
   */
  constructor({ store, storage, roles, roleErrorKey }) {
    this.store = store;
    this.storage = storage;
    this.roles = roles;
    this.roleErrorKey = roleErrorKey;
    this.session = JSON.parse(storage.getItem(store) || "null"); // {user, tokens}
    this.onSignedOut = () => {};
    this._refreshing = null;
  }

  get user() { return this.session && this.session.user; }
  get accessToken() { return this.session && this.session.tokens.access_token; }

  _save(session) {
    this.session = session;
    if (session) this.storage.setItem(this.store, JSON.stringify(session));
    else this.storage.removeItem(this.store);
  }

  async login(login, password) {
    const body = await this._fetch("POST", "/v1/auth/login", { login, password }, false);
    if (!this.roles.includes(body.user.role)) {
      throw new ApiError(403, { error: { code: "wrong_role", message: t(this.roleErrorKey) } });
    }
    this._save({ user: body.user, tokens: body.tokens });
    return body.user;
  }

  signOut() {
    this._save(null);
    this.onSignedOut();
  }

  /** A new access token from the refresh token (one request at a time); signs out when refused. */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = (async () => {
        try {
          const tokens = await this._fetch("POST", "/v1/auth/refresh", { refresh_token: this.session.tokens.refresh_token }, false);
          this._save({ ...this.session, tokens });
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) this.signOut();
          throw err;
        } finally {
          this._refreshing = null;
        }
      })();
    }
    return this._refreshing;
  }

  async _fetch(method, path, body, auth, extra = {}) {
    const headers = { accept: "application/json", ...extra };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (auth && this.accessToken) headers.authorization = `Bearer ${this.accessToken}`;
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  /** A JSON request as the signed-in user; an expired token is refreshed once. */
  async request(method, path, body, headers = {}) {
    try {
      return await this._fetch(method, path, body, true, headers);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 && this.session) {
        await this.refresh();
        return this._fetch(method, path, body, true, headers);
      }
      throw err;
    }
  }

  get(path) { return this.request("GET", path); }
  /** idempotencyKey: sent as Idempotency-Key, so that a request sent again (the answer was lost) makes
   * one change, not two (docs/api.md). */
  post(path, body = {}, { idempotencyKey } = {}) {
    return this.request("POST", path, body, idempotencyKey ? { "idempotency-key": idempotencyKey } : {});
  }
}

/** A fresh Idempotency-Key: 128 random bits in hex (crypto.randomUUID needs a secure context; a phone on
 * a clinic's plain-HTTP network has none, getRandomValues works everywhere). */
export function newIdempotencyKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A REST client for one app (see the Api constructor for the options). */
export function createApi(options) { return new Api(options); }
