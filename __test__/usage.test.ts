// Usage known before a session's first pick, and limit families, in the real pi of both
// generations: the accounts' usage is known only to the simulated usage endpoint (nothing is
// stored), and which account answers is read from the simulator's request log.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  assertNoSecretPrinted,
  dispatchModels,
  EXTENSION,
  GENERATIONS,
  makeHome,
  runPi,
  Sim,
  type SimAccountScript,
  seedAccounts,
} from "./harness.ts";

const DAY_S = 86_400;

/** A 5-hour and a weekly window, percent used and days until the week resets. */
function plus(fiveHour: number, weekly: number, weekResetDays: number): Record<string, unknown> {
  return {
    primary: { usedPercent: fiveHour, windowMinutes: 300, resetAfterSeconds: 5 * 3600 },
    secondary: { usedPercent: weekly, windowMinutes: 10080, resetAfterSeconds: weekResetDays * DAY_S },
  };
}

/** Each usage call takes this long, so pi's first request comes while the fetch pi started at
 * session start is still under way: the request must join it, not pick without it. */
const USAGE_DELAY_MS = 1200;

/** A simulator and an isolated pi home whose dispatch.json holds the accounts without usage. */
async function start(accounts: SimAccountScript[]) {
  const home = makeHome();
  const sim = await Sim.start(
    accounts.map((account) => ({ ...account, usageEndpoint: { delayMs: USAGE_DELAY_MS } })),
    home.home,
  );
  seedAccounts(
    home.agentDir,
    accounts.map((account) => ({
      label: account.accountId,
      accountId: account.accountId,
      tokens: sim.accounts[account.accountId],
    })),
  );
  const env = (seed: string) => ({
    PI_DISPATCH_BACKEND_URL: sim.backendBase,
    PI_DISPATCH_AUTH_URL: sim.issuer,
    PI_DISPATCH_SEED: seed,
  });
  const stop = () => {
    sim.stop();
    home.cleanup();
  };
  return { home, sim, env, stop };
}

type Started = Awaited<ReturnType<typeof start>>;

for (const generation of GENERATIONS) {
  describe(`pi ${generation === "pi073" ? "0.73" : "1.x"}: usage before the first pick, limit families`, () => {
    let models: string[] = [];
    const started: Started[] = [];

    const ask = (target: Started, model: string, seed: string) =>
      runPi(generation, ["-p", "--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`, "Say hello"], {
        ...target.home,
        env: target.env(seed),
      });

    before(async () => {
      models = await dispatchModels(generation);
      assert.ok(models.length >= 2, `pi lists dispatch models: ${JSON.stringify(models)}`);
    });

    after(() => {
      for (const target of started) target.stop();
    });

    test("five print runs: the untouched account answers every time, the spent one is never asked", async () => {
      const target = await start([
        { accountId: "acct-a", usage: plus(40, 60, 2) },
        { accountId: "acct-b", usage: plus(100, 80, 1) }, // its 5-hour window is spent
        { accountId: "acct-c", usage: plus(0, 0, 7) }, // untouched
        {
          accountId: "acct-d",
          usage: { primary: { usedPercent: 30, windowMinutes: 10080, resetAfterSeconds: 3 * DAY_S }, secondary: null },
        },
      ]);
      started.push(target);
      for (const seed of ["1", "2", "3", "4", "5"]) {
        const run = await ask(target, models[0], seed);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "hello from acct-c", `seed ${seed}: ${run.stderr}`);
      }
      const stats = await target.sim.stats();
      const responses = Object.fromEntries(
        ["acct-a", "acct-b", "acct-c", "acct-d"].map((id) => [id, stats.accounts[id].responses]),
      );
      assert.deepEqual(responses, { "acct-a": 0, "acct-b": 0, "acct-c": 5, "acct-d": 0 });
      // Learned once by the first run, then shared through dispatch.json for five minutes.
      for (const id of ["acct-a", "acct-b", "acct-c", "acct-d"]) {
        assert.equal(stats.accounts[id].whamUsage, 1, `${id}'s usage calls`);
      }
    });

    test("a model whose limit family is spent goes to another account; the same account serves the main model", async () => {
      const main = models[0];
      const familyModel = models.find((id) => id.includes("spark")) ?? models[1];
      // The backend names a per-model limit after its model ("GPT-5.3-Codex-Spark").
      const family = (used: number) => ({
        id: "codex_bengalfox",
        limitName: familyModel.toUpperCase(),
        models: [familyModel],
        usage: plus(used, 40, 3),
      });
      const target = await start([
        // acct-a's week resets first, so it is the main model's account.
        { accountId: "acct-a", usage: plus(10, 20, 1), families: [family(100)] },
        { accountId: "acct-b", usage: plus(30, 40, 5), families: [family(0)] },
      ]);
      started.push(target);
      const spark = await ask(target, familyModel, "1");
      assert.equal(spark.code, 0, spark.stderr);
      assert.equal(spark.stdout.trim(), "hello from acct-b", spark.stderr);
      const plain = await ask(target, main, "1");
      assert.equal(plain.code, 0, plain.stderr);
      assert.equal(plain.stdout.trim(), "hello from acct-a", plain.stderr);

      const stats = await target.sim.stats();
      const served = stats.requests.map((r) => [(r.bodyJson as { model?: string } | null)?.model, r.accountId]);
      assert.deepEqual(served, [
        [familyModel, "acct-b"],
        [main, "acct-a"],
      ]);
      assert.equal(stats.accounts["acct-a"].limitRefused, 0);
      // The extension's model header never leaves the machine.
      assert.ok(stats.requests.every((r) => r.headers["x-pi-dispatch-model"] === undefined));

      const status = await runPi(generation, ["-p", "--no-session", "-e", EXTENSION, "/dispatch-status"], {
        ...target.home,
        env: target.env("1"),
      });
      const shown = status.stdout + status.stderr;
      assert.match(
        shown,
        new RegExp(
          `\\n {4}${familyModel.toUpperCase().replace(/[.]/g, "\\.")}: 5h 100% used \\(resets .*\\)  \\[usage limit reached, back `,
        ),
      );
      assert.match(shown, /\nPaid requests: off\./);
    });

    test("/dispatch-settings spend on lets credits pay once every included quota is spent", async () => {
      const target = await start([
        { accountId: "acct-a", usage: plus(100, 50, 2), credits: { hasCredits: true, balance: 5 } },
        { accountId: "acct-b", usage: plus(100, 60, 3) },
      ]);
      started.push(target);
      const refused = await ask(target, models[0], "1");
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /acct-a: usage limit reached; credits would pay, but paid requests are off/);
      const settings = (args: string) =>
        runPi(generation, ["-p", "--no-session", "-e", EXTENSION, `/dispatch-settings${args}`], {
          ...target.home,
          env: target.env("1"),
        });
      const shown = await settings("");
      assert.match(shown.stdout + shown.stderr, /\n {2}spend off: credits and usage-based plans are never used\.\n/);
      const set = await settings(" spend on");
      assert.match(set.stdout + set.stderr, /^pi-dispatch: paid requests are on: /m);
      const paid = await ask(target, models[0], "1");
      assert.equal(paid.code, 0, paid.stderr);
      assert.equal(paid.stdout.trim(), "hello from acct-a");
      const stats = await target.sim.stats();
      assert.equal(stats.accounts["acct-a"].creditServed, 1);
      assert.equal(stats.accounts["acct-b"].responses, 0);
    });

    test("no account token appears in anything pi printed", async () => {
      for (const target of started) await assertNoSecretPrinted(target.sim);
    });
  });
}
