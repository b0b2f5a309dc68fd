// The real backend's failure shapes through the real pi CLI (print mode) of both generations:
// the request's own faults reach pi once with the backend's words, every event shape of a usage
// limit rotates, a stalled account is failed over, and the one-account exhausted message reads
// right. Which account answered, and how often, is read from the simulator.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  dispatchModels,
  EXTENSION,
  GENERATIONS,
  makeHome,
  type PiRun,
  runPi,
  Sim,
  type SimAccountScript,
  seedAccounts,
} from "./harness.ts";

const WEEK_S = 7 * 24 * 3600;

/** A simulator whose accounts the policy tries in order (acct-a's weekly window resets first). */
async function start(accounts: SimAccountScript[]) {
  const home = makeHome();
  const sim = await Sim.start(accounts, home.home);
  const now = Date.now();
  seedAccounts(
    home.agentDir,
    accounts.map((account, i) => ({
      label: account.accountId,
      accountId: account.accountId,
      tokens: sim.accounts[account.accountId],
      usage: {
        observedAtMs: now,
        windows: [{ windowSeconds: WEEK_S, usedPercent: 10, resetsAtMs: now + (i + 1) * 3_600_000 }],
      },
    })),
  );
  return {
    sim,
    home,
    /** Model requests per account so far. */
    responses: async () => {
      const stats = await sim.stats();
      return Object.fromEntries(accounts.map((a) => [a.accountId, stats.accounts[a.accountId]?.responses ?? 0]));
    },
    stop: () => {
      sim.stop();
      home.cleanup();
    },
  };
}

for (const generation of GENERATIONS) {
  describe(`pi ${generation === "pi073" ? "0.73" : "1.x"}: failures as the backend sends them`, () => {
    let model: string;
    const running: { stop: () => void }[] = [];

    const pool = async (accounts: SimAccountScript[]) => {
      const started = await start(accounts);
      running.push(started);
      return started;
    };

    const ask = (
      target: Awaited<ReturnType<typeof start>>,
      env: Record<string, string> = {},
      extra: string[] = [],
    ): Promise<PiRun> =>
      runPi(
        generation,
        ["-p", "--no-session", ...extra, "-e", EXTENSION, "--model", `dispatch/${model}`, "Say hello"],
        {
          ...target.home,
          env: {
            PI_DISPATCH_BACKEND_URL: target.sim.backendBase,
            PI_DISPATCH_AUTH_URL: target.sim.issuer,
            PI_DISPATCH_SEED: "1",
            ...env,
          },
        },
      );

    before(async () => {
      [model] = await dispatchModels(generation);
      assert.ok(model, "pi lists the dispatch models");
    });

    after(() => {
      for (const started of running) started.stop();
    });

    test("a context overflow reaches pi once, in the backend's words", async () => {
      const words = "Your input exceeds the context window of this model. Please adjust your input and try again.";
      const target = await pool([
        {
          accountId: "acct-a",
          behaviors: [{ kind: "streamError", code: "context_length_exceeded", style: "nested", message: words }],
        },
        { accountId: "acct-b" },
      ]);
      const run = await ask(target, {}, ["--mode", "json"]);
      const requests = (await target.sim.stats()).requests;
      const overflowed = requests.filter((r) => r.behavior?.kind === "streamError");
      assert.equal(overflowed.length, 1, "the oversized request went upstream once");
      assert.ok(
        requests.every((r) => r.accountId === "acct-a"),
        "no other account got it: the proxy passed the fault on instead of rotating",
      );
      // pi got the backend's own words (pi 0.73 then compacts and asks again, on acct-a).
      const errors = run.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { type: string; message?: { errorMessage?: string } })
        .filter((event) => event.type === "message_end" && event.message?.errorMessage)
        .map((event) => event.message?.errorMessage ?? "");
      assert.ok(
        errors.some((error) => error.includes("exceeds the context window")),
        `pi's error: ${JSON.stringify(errors)}; stderr: ${run.stderr}`,
      );
      assert.doesNotMatch(run.stderr, /Extension error/);
    });

    test("a usage limit in the nested event shape, after response.metadata, rotates and benches", async () => {
      const target = await pool([
        {
          accountId: "acct-a",
          behaviors: [
            {
              kind: "streamError",
              code: "usage_limit_reached",
              style: "nested",
              resetsInSeconds: 3600,
              opening: ["response.created", "response.metadata", "response.in_progress"],
            },
          ],
        },
        { accountId: "acct-b" },
      ]);
      const first = await ask(target);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /hello from acct-b/);
      assert.match(first.stderr, /acct-a: usage limit reached \(back .*\); now using acct-b/);
      const second = await ask(target);
      assert.match(second.stdout, /hello from acct-b/);
      assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 2 }, "acct-a stays benched");
    });

    test("a stalled first account is failed over", async () => {
      const target = await pool([
        { accountId: "acct-a", behaviors: [{ kind: "hangAfterCreated" }] },
        { accountId: "acct-b" },
      ]);
      const started = Date.now();
      const run = await ask(target, { PI_DISPATCH_STALL_MS: "1000" });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /hello from acct-b/);
      assert.ok(Date.now() - started < 30_000, "not pi's own 300 s");
      assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 1 });
    });

    test("with one account spent, the message says it cannot answer, and pi does not retry", async () => {
      const target = await pool([{ accountId: "acct-a", behaviors: [{ kind: "usageLimit", resetsInSeconds: 1800 }] }]);
      const run = await ask(target);
      assert.equal(run.code, 1, run.stdout);
      assert.match(
        run.stderr,
        /^pi-dispatch: your only account cannot answer now \(acct-a: usage limit reached, back /,
      );
      assert.deepEqual(await target.responses(), { "acct-a": 1 }, "no retry reached the backend");
    });
  });
}
