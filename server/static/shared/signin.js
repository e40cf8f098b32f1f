// The sign-in screen the console and the doctor's app share (#login with #login-form, #login-name,
// #login-password, #login-error; #app hidden meanwhile): signs in through `api`, then calls `onSignedIn`.
import { ApiError } from "/static/shared/api.js";
import { errorText, t } from "/static/shared/i18n.js";

const $ = (id) => document.getElementById(id);

export function showSignIn(api, onSignedIn) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await api.login($("login-name").value, $("login-password").value);
      $("login").hidden = true;
      onSignedIn();
    } catch (err) {
      $("login-error").textContent = err instanceof ApiError && err.status === 401 ? t("common.error.invalid_credentials") : errorText(err);
    }
  };
}
