// `npm run bench`: measures pi-dispatch against the simulator on loopback and writes BENCHMARKS.md.
// Not a test: nothing here runs in CI or in `npm test`.
//
// Options (after `npm run bench --`): --quick (few runs, for trying the harness; the report says
// so), --only=<scenario,...>, --out=<file> (default BENCHMARKS.md).
//
// Each scenario is one file, bench/scenarios/<name>.ts, exporting `scenario` (the shape is in
// bench/scenario.ts): its `run` measures, in this process or through `inWorker` in a fresh worker
// process next to the addon, and returns its section of the report and its targets. To add one,
// write that file and add its name to SCENARIOS below; bench/report.ts puts the sections in order.

import { loadavg } from "node:os";
import { resolve } from "node:path";
import { ROOT } from "./lib.ts";
import { type Section, writeReport } from "./report.ts";
import { loadScenario, log, runWorker } from "./scenario.ts";

/** In the report's order. */
const SCENARIOS = ["stream", "rotation", "exhausted", "status", "startup", "memory", "rewrite", "first-pick"];

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args
  .find((a) => a.startsWith("--only="))
  ?.slice("--only=".length)
  .split(",");
const unknown = only?.filter((name) => !SCENARIOS.includes(name)) ?? [];
if (unknown.length > 0) throw new Error(`no scenario ${unknown.join(", ")}; there are ${SCENARIOS.join(", ")}`);
const out = resolve(ROOT, args.find((a) => a.startsWith("--out="))?.slice("--out=".length) ?? "BENCHMARKS.md");

const started = new Date();
const loadBefore = loadavg();
const t0 = performance.now();
const sections: Section[] = [];
for (const name of SCENARIOS) {
  if (only && !only.includes(name)) continue;
  const scenario = await loadScenario(name);
  sections.push(await scenario.run({ quick, log, inWorker: (options) => runWorker(name, options) }));
}
const { met, total } = writeReport(out, {
  command: `npm run bench${args.length > 0 ? ` -- ${args.join(" ")}` : ""}`,
  quick,
  started,
  minutes: ((performance.now() - t0) / 60_000).toFixed(1),
  loadBefore,
  loadAfter: loadavg(),
  sections,
});
log(`wrote ${out}: ${met} of ${total} targets met`);
process.exit(0);
