// The console's REST client: staff only, kept for this browser tab (a dispatch PC is shared).
import { ApiError, createApi } from "/static/shared/api.js";

export { ApiError };
export const api = createApi({
  store: "tot-console-session",
  storage: sessionStorage,
  roles: ["dispatcher", "admin"],
  roleErrorKey: "console.login.staffOnly",
});
