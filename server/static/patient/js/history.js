// The patient's own calls, newest first (GET /v1/calls: a patient sees only their own).
import { label, language, onLanguageChange } from "/static/shared/i18n.js";
import { api } from "./api.js";
import { $, dateTime, h } from "./dom.js";

export class History {
  constructor() {
    this.items = [];
    onLanguageChange(() => this.render());
  }

  async load() {
    try {
      const page = await api.get("/v1/calls?limit=50");
      this.items = page.items;
    } catch (err) {
      console.warn("history", err);
    }
    this.render();
    return this.items;
  }

  /** Show a newer state of one call (its status changed while the app watched it). */
  update(call) {
    const i = this.items.findIndex((c) => c.id === call.id);
    if (i < 0) this.items.unshift(call);
    else this.items[i] = { ...this.items[i], ...call };
    this.render();
  }

  render() {
    $("history-empty").hidden = this.items.length > 0;
    $("history").replaceChildren(...this.items.map((c) => h("li", { dataset: { call: c.id, status: c.status } },
      h("span", { class: "status" }, label("common.callStatus", c.status)), " · ",
      h("time", { datetime: new Date(c.created_at || 0).toISOString() }, dateTime(c.created_at, language())), " · ",
      h("span", { class: "address" }, c.address))));
  }
}
