// `pi install npm:pi-dispatch` as a user runs it, on both pi generations: the root package and
// this machine's platform package, packed from the tree, served by a registry on loopback; then
// the installed extension (not the source tree) answers a prompt through the simulator.

import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { platformTriple } from "../index.ts";
import { GENERATIONS, listModels, makeHome, ROOT, runPi, Sim, seedAccounts } from "./harness.ts";
import { LoopbackRegistry, npmPack, type PackedPackage } from "./registry.ts";

const TRIPLE = platformTriple();
const BINARY = `pi-dispatch.${TRIPLE}.node`;

let work: string;
let registry: LoopbackRegistry;
let version: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "pi-dispatch-install-"));
  // The platform package as the release job assembles it: its manifest plus the built binary.
  const stage = join(work, TRIPLE);
  mkdirSync(stage);
  copyFileSync(join(ROOT, "npm", TRIPLE, "package.json"), join(stage, "package.json"));
  copyFileSync(join(ROOT, BINARY), join(stage, BINARY));
  const root = npmPack(ROOT, work);
  version = root.manifest.version;
  // Every other platform package is listed with its real manifest but has no tarball: npm must
  // skip it by its os/cpu/libc alone, or the install fails on the download.
  const others: PackedPackage[] = readdirSync(join(ROOT, "npm"))
    .filter((dir) => dir !== TRIPLE)
    .map((dir) => ({ manifest: JSON.parse(readFileSync(join(ROOT, "npm", dir, "package.json"), "utf8")) }));
  registry = await LoopbackRegistry.start([root, npmPack(stage, work), ...others]);
});

after(async () => {
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
});

/** npm confined to the throwaway home and the loopback registry. */
function npmEnv(home: string): Record<string, string> {
  return {
    npm_config_registry: registry.url,
    npm_config_prefix: join(home, "npm-global"),
    npm_config_cache: join(home, "npm-cache"),
    npm_config_userconfig: join(home, ".npmrc"),
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
  };
}

/** The pi-dispatch binaries the dynamic loader initialised, from glibc's LD_DEBUG=files logs
 * (one file per process): the path the running pi really loaded, whatever the loader tried. */
function loadedBinaries(logPrefix: string): string[] {
  const dir = join(logPrefix, "..");
  const base = logPrefix.slice(dir.length + 1);
  const paths = new Set<string>();
  for (const file of readdirSync(dir).filter((name) => name.startsWith(`${base}.`))) {
    for (const match of readFileSync(join(dir, file), "utf8").matchAll(/calling init: (\S+\.node)$/gm)) {
      if (match[1].endsWith(BINARY)) paths.add(match[1]);
    }
  }
  return [...paths];
}

for (const generation of GENERATIONS) {
  describe(`pi install npm:pi-dispatch on pi ${generation === "pi073" ? "0.73" : "1.x"}`, () => {
    let sim: Sim;
    let home: ReturnType<typeof makeHome>;

    before(async () => {
      home = makeHome();
      sim = await Sim.start(
        [{ accountId: "acct-installed", default: { kind: "ok", text: "Hello from the installed package" } }],
        home.home,
      );
    });

    after(() => {
      sim.stop();
      home.cleanup();
    });

    test("npm fetches only pi-dispatch and this platform's package", async () => {
      registry.requests.length = 0;
      const run = await runPi(generation, ["install", "npm:pi-dispatch"], { ...home, env: npmEnv(home.home) });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const downloads = registry.requests.filter((path) => path.endsWith(".tgz")).sort();
      assert.deepEqual(downloads, [
        `/pi-dispatch-${TRIPLE}/-/pi-dispatch-${TRIPLE}-${version}.tgz`,
        `/pi-dispatch/-/pi-dispatch-${version}.tgz`,
      ]);
      // Peers are optional: npm must not go looking for pi itself.
      assert.deepEqual(
        registry.requests.filter((path) => !path.startsWith("/pi-dispatch")),
        [],
      );
    });

    test("the installed extension answers through the binary of the installed platform package", async () => {
      seedAccounts(home.agentDir, [
        { label: "installed", accountId: "acct-installed", tokens: sim.accounts["acct-installed"] },
      ]);
      const env = npmEnv(home.home);
      const [model] = await listModels(generation, "dispatch", { ...home, extension: null, env });
      assert.ok(model, "the installed extension registers the dispatch provider");

      const logPrefix = join(home.home, "ld-debug");
      const run = await runPi(generation, ["-p", "--no-session", "--model", `dispatch/${model}`, "Say hello"], {
        ...home,
        env: {
          ...env,
          PI_DISPATCH_BACKEND_URL: sim.backendBase,
          PI_DISPATCH_AUTH_URL: sim.issuer,
          LD_DEBUG: "files",
          LD_DEBUG_OUTPUT: logPrefix,
        },
      });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /Hello from the installed package/);
      const served = (await sim.stats()).requests.filter((r) => r.path?.endsWith("/codex/responses"));
      assert.equal(served.length, 1);
      assert.equal(served[0].accountId, "acct-installed");

      const loaded = loadedBinaries(logPrefix);
      assert.equal(loaded.length, 1, `exactly one pi-dispatch binary loaded: ${loaded.join(", ")}`);
      assert.ok(
        loaded[0].startsWith(`${realpathSync(home.home)}/`) &&
          loaded[0].endsWith(`/node_modules/pi-dispatch-${TRIPLE}/${BINARY}`),
        `loaded from the installed platform package, not ${loaded[0]}`,
      );
    });
  });
}
