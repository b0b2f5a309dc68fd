// Preloaded into a measured pi process (`node --require bench/cpu-report.cjs cli.js ...`): at exit,
// appends the process's CPU time (user + system) and its wall time since start, in ms, as one JSON
// line to the file named by PI_DISPATCH_BENCH_REPORT.
const { appendFileSync } = require("node:fs");

const file = process.env.PI_DISPATCH_BENCH_REPORT;
if (file) {
  process.once("exit", () => {
    const cpu = process.cpuUsage();
    const line = JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() });
    appendFileSync(file, `${line}\n`);
  });
}
