// The ES module entry, pushgateway.mjs: the classic script's API, defined once.
import {test} from "node:test";
import assert from "node:assert/strict";
import {createRequire} from "node:module";

const require = createRequire(import.meta.url);

test("the ES module entry exports the same API", async () => {
  const esm = await import("../../static/js/pushgateway.mjs");
  const cjs = require("../../static/js/pushgateway.js");
  assert.equal(esm.createClient, cjs.createClient);
  assert.equal(esm.default.createClient, cjs.createClient);
  assert.deepEqual(esm.DEFAULTS, cjs.DEFAULTS);
  for (const name of ["fromDocument", "watchFragments", "FACTS", "CLIENT_HEADER", "CLIENT_FIELD"]) {
    assert.equal(esm[name], cjs[name], name);
  }
});
