// The real pi CLI, both generations, answering through the dispatch provider: pi's own Codex
// client -> the native proxy -> the simulated backend, with accounts seeded in dispatch.json.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { platformTriple } from "../index.ts";
import {
  assertNoSecretPrinted,
  codexCatalog,
  EXTENSION,
  extensionWithoutBinary,
  GENERATIONS,
  listModels,
  makeHome,
  runPi,
  Sim,
  seedAccounts,
} from "./harness.ts";

for (const generation of GENERATIONS) {
  describe(`pi ${generation === "pi073" ? "0.73" : "1.x"}`, () => {
    let sim: Sim;
    let home: ReturnType<typeof makeHome>;

    before(async () => {
      home = makeHome();
      sim = await Sim.start(
        [
          { accountId: "acct-expired", default: { kind: "ok", text: "wrong account" } },
          { accountId: "acct-live", default: { kind: "ok", text: "Hello through the pool", deltas: 4 } },
        ],
        home.home,
      );
    });

    after(() => {
      sim.stop();
      home.cleanup();
    });

    test("the dispatch provider mirrors the running pi's openai-codex catalog", async () => {
      const mirrored = await listModels(generation, "dispatch", home);
      const codex = await codexCatalog(generation, home);
      assert.ok(codex.length > 0, "pi lists its own Codex models");
      assert.deepEqual(mirrored, codex);
    });

    test("a prompt is answered through the proxy by the first usable account", async () => {
      seedAccounts(home.agentDir, [
        {
          label: "logged-out",
          accountId: "acct-expired",
          tokens: sim.accounts["acct-expired"],
          state: { kind: "needsLogin", reason: "refresh token expired" },
        },
        { label: "live", accountId: "acct-live", tokens: sim.accounts["acct-live"] },
      ]);
      const [model] = await listModels(generation, "dispatch", home);
      const run = await runPi(
        generation,
        ["-p", "--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`, "Say hello"],
        {
          ...home,
          env: { PI_DISPATCH_BACKEND_URL: sim.backendBase, PI_DISPATCH_AUTH_URL: sim.issuer },
        },
      );
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /Hello through the pool/);

      const stats = await sim.stats();
      const served = stats.requests.filter((r) => r.path?.endsWith("/codex/responses"));
      assert.equal(served.length, 1, "exactly one upstream model request");
      assert.equal(served[0].accountId, "acct-live");
      // Compared without assert.equal, which would print the tokens on a mismatch.
      assert.ok(served[0].headers.authorization === `Bearer ${sim.accounts["acct-live"].access}`, "acct-live's token");
      assert.equal(stats.requests.filter((r) => r.accountId === "acct-expired").length, 0);
    });

    test("without its native binary, pi still starts and /dispatch-status says why", async () => {
      const broken = extensionWithoutBinary(home.home);
      const run = await runPi(generation, ["-p", "--no-session", "-e", broken, "/dispatch-status"], home);
      assert.equal(run.code, 0, run.stderr);
      const output = run.stdout + run.stderr;
      assert.match(output, new RegExp(`native binary for this platform \\(${platformTriple()}\\) is missing`));
      assert.match(output, /pi install npm:pi-dispatch/);
    });

    test("no account token appears in anything pi printed", async () => {
      await assertNoSecretPrinted(sim);
    });
  });
}
