// The patient app's REST client: patients only, kept on the phone between visits (localStorage).
import { ApiError, createApi } from "/static/shared/api.js";

export { ApiError };
export const api = createApi({
  store: "tot-patient-session",
  storage: localStorage,
  roles: ["patient"],
  roleErrorKey: "patient.auth.patientsOnly",
});
