// Runs Node 22 (recorded in .tools/e2e.json by setup-e2e.mjs) with the given arguments. Node 22
// runs TypeScript directly, which the test suite and the demo rely on.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tools = JSON.parse(readFileSync(join(root, ".tools", "e2e.json"), "utf8"));
const run = spawnSync(tools.pi1.node, process.argv.slice(2), { cwd: root, stdio: "inherit" });
process.exit(run.status ?? 1);
