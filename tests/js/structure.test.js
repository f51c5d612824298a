// The browser module stays readable in one sitting: no function in it longer than 60 lines,
// the UMD wrapper and the module body it is given excepted.
"use strict";
const {test} = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const MODULE = path.join(__dirname, "..", "..", "static", "js", "pushgateway.js");
const LONGEST = 60;

// Each function, block-bodied arrow function or method, as [lines, first line, its text]:
// from the line that opens it to the first later line at its indentation that starts with
// "}" (the module is formatted as prettier would: 2-space indents, closing braces aligned).
function functions(source) {
  const lines = source.split("\n");
  const opens = [
    /\bfunction\b[^{]*\{\s*$/,
    /=>\s*\{\s*$/,
    /^\s*(async\s+)?((get|set)\s+)?[A-Za-z_$][\w$]*\s*\([^;]*\)\s*\{\s*$/,
  ];
  const statement = /^\s*(if|for|while|switch|catch|else|try|do)\b|^\s*\}/;
  const found = [];
  lines.forEach((line, i) => {
    if (statement.test(line) || !opens.some((re) => re.test(line))) return;
    const indent = line.search(/\S/);
    const closes = (l, j) => j > i && l.search(/\S/) === indent && l.trim().startsWith("}");
    const end = lines.findIndex(closes);
    found.push([end - i + 1, i + 1, line.trim()]);
  });
  return found;
}

test("no function in the browser module is longer than 60 lines", () => {
  const found = functions(fs.readFileSync(MODULE, "utf8"));
  const body = found.filter(([, , text]) => !text.startsWith("(function (root, factory)") &&
    !text.startsWith("})(typeof self"));
  assert.ok(body.length > 50, "the scan finds the module's functions");
  const long = body.filter(([lines]) => lines > LONGEST);
  assert.deepEqual(long.map(([n, at, text]) => `line ${at}: ${n} lines: ${text}`), []);
});

test("the scan measures a function from its opening line to its closing brace", () => {
  const source = ["function a() {", "  const f = (x) => {", "    return x;", "  };", "}", ""].join("\n");
  assert.deepEqual(functions(source), [
    [5, 1, "function a() {"],
    [3, 2, "const f = (x) => {"],
  ]);
});
