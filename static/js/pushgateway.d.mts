// Declarations for the ES module entry, pushgateway.mjs (the same API as pushgateway.js).
import * as api from "./pushgateway.js";

export * from "./pushgateway.js";
export default api;
