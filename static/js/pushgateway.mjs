/*
 * django-pushgateway browser module, as an ES module:
 *
 *   import {createClient} from "django-pushgateway/pushgateway.mjs";
 *   const push = createClient({throttle: 250}); // and the page's rendered configuration
 *   push.subscribe("comments-7", ({reason}) => refetch());
 *
 * The code lives in pushgateway.js (one file for the classic script and for bundlers, no
 * build step); importing it for its effect defines the API once, whether a bundler or the
 * browser loads this file. Load either this entry or the classic script on a page, not both.
 */
import "./pushgateway.js";

const api = globalThis.PushGatewayAPI;

export const {createClient, fromDocument, watchFragments} = api;
export const {DEFAULTS, FACTS, CLIENT_HEADER, CLIENT_FIELD} = api;
export default api;
