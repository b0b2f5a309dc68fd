// `npm run check:pi-latest`: runs the end-to-end suite (__test__/*.test.ts) with the newest pi 1.x
// on the npm registry as the 1.x generation (pi 0.73 stays as it is), so a new pi release is
// checked with one command. The pinned tools in .tools/e2e.json are left alone: this pi is
// recorded in .tools/e2e-latest.json, which the harness reads through PI_DISPATCH_E2E_TOOLS.
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = "@earendil-works/pi-coding-agent";
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const toolsFile = join(root, ".tools", "e2e-latest.json");

/** The highest release in 1.x (npm leaves pre-releases out of a range). */
function newestPi1() {
  const answer = JSON.parse(execFileSync("npm", ["view", `${PACKAGE}@1.x`, "version", "--json"]).toString());
  const versions = [answer].flat();
  const key = (version) => version.split(".").map(Number);
  versions.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
  const newest = versions.at(-1);
  if (!newest) throw new Error(`npm lists no 1.x release of ${PACKAGE}`);
  return newest;
}

const version = newestPi1();
console.log(`newest pi 1.x on the registry: ${version}`);
execFileSync(process.execPath, [join(root, "scripts", "setup-e2e.mjs"), "--pi1", version, "--out", toolsFile], {
  stdio: "inherit",
});
const tools = JSON.parse(readFileSync(toolsFile, "utf8"));
// What runs is what the unpacked package says it is, not what was asked for.
const ran = JSON.parse(readFileSync(join(dirname(tools.pi1.cli), "..", "..", "package.json"), "utf8")).version;
const node = execFileSync(tools.pi1.node, ["-p", "process.versions.node"]).toString().trim();
const files = readdirSync(join(root, "__test__"))
  .filter((name) => name.endsWith(".test.ts"))
  .map((name) => join("__test__", name));
const run = spawnSync(tools.pi1.node, ["--test", "--test-concurrency=1", ...files], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, PI_DISPATCH_E2E_TOOLS: toolsFile },
});
const passed = run.status === 0;
console.log(
  `\ncheck:pi-latest: the e2e suite with pi ${ran} (Node ${node}) as the pi 1.x generation: ${passed ? "PASSED" : "FAILED"}`,
);
process.exit(passed ? 0 : 1);
