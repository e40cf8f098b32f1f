// Phone confirmation after a sign-up with a phone number (docs/api.md, "Phone confirmation"): a form
// for the six-digit SMS code (POST /v1/auth/phone/confirm) with "Send a new code"
// (POST /v1/auth/phone/resend). Loaded lazily by the apps (sign-up is online anyway).
import { errorText, t } from "/static/shared/i18n.js";
import { h } from "/static/shared/dom.js";

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  const error = (data && data.error) || null;
  return { ok: response.ok, status: response.status, error, data };
}

/**
 * Show the code form in place of `replaced` (hidden meanwhile) for `phone` (as the person wrote it);
 * `onConfirmed()` runs once the code was accepted (the app then signs in with the password).
 */
export function askForCode(replaced, phone, onConfirmed) {
  document.getElementById("phone-form")?.remove();
  const code = h("input", { id: "phone-code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxlength: "6", required: true });
  const error = h("p", { id: "phone-error", class: "error", role: "alert" });
  const note = h("p", { id: "phone-note", class: "note", "aria-live": "polite" }, t("common.phone.sent", { phone }));
  const resend = h("button", { type: "button", id: "phone-resend" }, t("common.phone.resend"));
  const form = h(
    "form",
    { id: "phone-form" },
    h("h2", {}, t("common.phone.title")),
    note,
    h("label", {}, h("span", {}, t("common.phone.code")), " ", code),
    h("button", { type: "submit", id: "phone-submit", class: "primary" }, t("common.phone.submit")),
    " ",
    resend,
    error,
  );
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const answer = await post("/v1/auth/phone/confirm", { phone, code: code.value.trim() });
    if (answer.ok) {
      form.remove();
      replaced.hidden = false;
      await onConfirmed();
    } else if (answer.error && answer.error.code === "wrong_code") {
      error.textContent = t("common.phone.wrongCode");
    } else {
      error.textContent = errorText({ code: answer.error && answer.error.code, status: answer.status, body: answer.data, message: answer.error && answer.error.message });
    }
  };
  resend.onclick = async () => {
    error.textContent = "";
    const answer = await post("/v1/auth/phone/resend", { phone });
    if (answer.ok) note.textContent = t("common.phone.resent");
    else error.textContent = errorText({ code: answer.error && answer.error.code, status: answer.status, body: answer.data, message: answer.error && answer.error.message });
  };
  replaced.hidden = true;
  replaced.after(form);
  code.focus();
  return form;
}
