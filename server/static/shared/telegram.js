// "Link Telegram": a small control every app shows beside the signed-in person (docs/notifications.md,
// "Telegram"). It asks the server for a one-time link (POST /v1/telegram/link), opens the deep link
// t.me/<bot>?start=<token> (and shows it, for a browser that blocks the new tab), then watches
// GET /v1/telegram/link until the bot has seen /start and the chat is linked; Unlink is
// DELETE /v1/telegram/link. Hidden when the server has no Telegram bot (404).
//
// Apps import it lazily (import() in a try) so that an offline start, whose service worker caches
// only the app's own shell, still starts without it.
import { errorText, onLanguageChange, t } from "/static/shared/i18n.js";
import { h } from "/static/shared/dom.js";

const POLL_MS = 2000;

export class TelegramLink {
  /** root: an empty element to draw into; api: the app's REST client (shared/api.js). */
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.state = "unknown"; // unknown | off | linked | unlinked | waiting
    this.url = null;
    this.error = "";
    this._poll = null;
    onLanguageChange(() => this.render());
  }

  async refresh() {
    try {
      const body = await this.api.get("/v1/telegram/link");
      this.state = body.linked ? "linked" : this.state === "waiting" ? "waiting" : "unlinked";
      if (body.linked) this._stopPolling();
    } catch (err) {
      if (err.status === 404) this.state = "off";
      else this.error = errorText(err);
    }
    this.render();
  }

  async link() {
    this.error = "";
    try {
      const body = await this.api.post("/v1/telegram/link");
      this.url = body.url;
      this.state = "waiting";
      window.open(body.url, "_blank", "noopener");
      const expires = Date.parse(body.expires_at) || Date.now() + 600_000;
      this._stopPolling();
      this._poll = setInterval(() => {
        if (Date.now() > expires) { this._stopPolling(); this.state = "unlinked"; this.render(); return; }
        this.refresh();
      }, POLL_MS);
    } catch (err) {
      this.error = errorText(err);
    }
    this.render();
  }

  async unlink() {
    this.error = "";
    try {
      await this.api.request("DELETE", "/v1/telegram/link");
      this.state = "unlinked";
      this.url = null;
    } catch (err) {
      this.error = errorText(err);
    }
    this.render();
  }

  stop() { this._stopPolling(); }

  _stopPolling() {
    if (this._poll) clearInterval(this._poll);
    this._poll = null;
  }

  render() {
    this.root.hidden = this.state === "off" || this.state === "unknown";
    // Laid out here, not in each app's CSS: an inline style would beat the hidden attribute, so set both.
    Object.assign(this.root.style, { display: this.root.hidden ? "none" : "inline-flex", gap: "0.5em", alignItems: "center" });
    this.root.dataset.state = this.state;
    const parts = [];
    if (this.state === "linked") {
      parts.push(h("span", { class: "tg-state" }, t("common.telegram.linked")));
      parts.push(h("button", { type: "button", class: "tg-unlink", onclick: () => this.unlink() }, t("common.telegram.unlink")));
    } else if (this.state === "unlinked" || this.state === "waiting") {
      parts.push(h("button", { type: "button", class: "tg-link", onclick: () => this.link() }, t("common.telegram.link")));
      if (this.state === "waiting" && this.url) {
        parts.push(h("a", { class: "tg-open", href: this.url, target: "_blank", rel: "noopener" }, t("common.telegram.open")));
      }
    }
    if (this.error) parts.push(h("span", { class: "error", role: "alert" }, this.error));
    this.root.replaceChildren(...parts);
  }
}

/** Draw the control into `root` for the signed-in user of `api`; returns it (or null when the module
 * could not start). */
export async function mountTelegramLink(root, api) {
  const control = new TelegramLink(root, api);
  await control.refresh();
  return control;
}
