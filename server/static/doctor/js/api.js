// The doctor's REST client: doctors only, kept in localStorage (the doctor's own phone, and a shift
// outlives a closed tab).
import { ApiError, createApi } from "/static/shared/api.js";

export { ApiError };
export const api = createApi({
  store: "tot-doctor-session",
  storage: localStorage,
  roles: ["doctor"],
  roleErrorKey: "doctor.login.doctorsOnly",
});
