// Syntax-check Mermaid diagrams with Mermaid itself, the way a code host's renderer parses them.
//
// Usage: node tests/mermaid_check.mjs FILE...      (one diagram per file; "-" reads stdin)
// Needs: npm install --prefix /tmp/mmd mermaid@11.17.2 jsdom@24.1.3
//        (or set TOPO_MERMAID_MODULES to another node_modules folder holding both)
// Prints "ok FILE TYPE" or "FAIL FILE: reason" per file; exits 0 when all parse, 1 when one
// does not, 2 when Mermaid or jsdom cannot be loaded.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.TOPO_MERMAID_MODULES || "/tmp/mmd/node_modules";
let mermaid;
try {
  // Mermaid's parser wants a DOM (DOMPurify, d3), so give it jsdom's.
  const require = createRequire(join(modules, "noop.js"));
  const { JSDOM } = require("jsdom");
  const dom = new JSDOM("<!DOCTYPE html><body></body>", { pretendToBeVisual: true });
  globalThis.window = dom.window;
  globalThis.document = dom.window.document;
  for (const name of ["DOMParser", "Element", "HTMLElement", "Node", "getComputedStyle"]) {
    if (!(name in globalThis)) globalThis[name] = dom.window[name];
  }
  const url = pathToFileURL(join(modules, "mermaid/dist/mermaid.core.mjs")).href;
  mermaid = (await import(url)).default;
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
} catch (err) {
  console.log(`cannot load mermaid and jsdom from ${modules}: ${err.message || err}`);
  process.exit(2);
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file === "-" ? 0 : file, "utf8");
  try {
    const result = await mermaid.parse(text);
    console.log(`ok ${file} ${result.diagramType}`);
  } catch (err) {
    failed += 1;
    const reason = String(err.message || err).split("\n").slice(0, 6).join(" | ");
    console.log(`FAIL ${file}: ${reason}`);
  }
}
process.exit(failed ? 1 : 0);
