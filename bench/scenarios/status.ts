// 4. Status: the addon's `status(sessionId, true)` with stale usage (every account fetched,
// concurrently, each usage call slow) and again with fresh usage (nothing to fetch).

import { accountIds, seedSimAccounts, sleep, sum, summarize, totalRequests } from "../lib.ts";
import { fmt, ms, type Target, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

const USAGE_DELAY_MS = 300;

interface Options {
  accounts: number;
  runs: number;
  usageDelayMs: number;
}

interface Result {
  /** One stale `status` a run. */
  cold: number[];
  /** Five fresh ones a run. */
  fresh: number[];
  /** Usage calls the sim saw, one count a run. */
  coldCalls: number[];
  freshCalls: number[];
}

export const scenario: Scenario<Options, Result> = {
  worker: {
    sim: ({ accounts, usageDelayMs }) => ({
      accounts: accountIds(accounts).map((accountId) => ({ accountId, usageEndpoint: { delayMs: usageDelayMs } })),
    }),
    async measure({ sim, agentDir, startProxy, newSession }, options) {
      const n = options.accounts;
      const ids = accountIds(n);
      const { native } = await startProxy();
      const session = newSession();
      const result: Result = { cold: [], fresh: [], coldCalls: [], freshCalls: [] };
      // Run 0 is a warm-up.
      for (let i = 0; i < options.runs + 1; i++) {
        // The results of the last run are written in the background; let that land before the
        // file is replaced, or it would make the usage fresh again.
        await sleep(150);
        seedSimAccounts(agentDir, sim, ids);
        await sim.resetStats();
        let start = performance.now();
        const view = await native.status(session, true);
        const coldMs = performance.now() - start;
        if ("kind" in view) throw new Error(view.message);
        if (view.accounts.length !== n || view.accounts.some((a) => a.stale)) {
          throw new Error("status did not refresh every account");
        }
        const afterCold = totalRequests(await sim.stats()).usage;
        await sim.resetStats();
        const freshRuns: number[] = [];
        for (let j = 0; j < 5; j++) {
          start = performance.now();
          await native.status(session, true);
          freshRuns.push(performance.now() - start);
        }
        const afterFresh = totalRequests(await sim.stats()).usage;
        if (i > 0) {
          result.cold.push(coldMs);
          result.fresh.push(...freshRuns);
          result.coldCalls.push(afterCold);
          result.freshCalls.push(afterFresh);
        }
      }
      return result;
    },
  },

  async run({ quick, log, inWorker }) {
    const runs = quick ? 3 : 12;
    const targets: Target[] = [];
    const rows: string[][] = [];
    for (const n of [1, 10, 50]) {
      log(`status: ${n} account(s), usage endpoint ${USAGE_DELAY_MS} ms, ${runs} cold runs`);
      const r = await inWorker({ accounts: n, runs, usageDelayMs: USAGE_DELAY_MS });
      const cold = summarize(r.cold);
      const fresh = summarize(r.fresh);
      const calls = summarize(r.coldCalls);
      const freshCalls = sum(r.freshCalls);
      rows.push([String(n), fmt(cold), `${calls.min}–${calls.max}`, fmt(fresh), String(freshCalls)]);
      // "About one request's latency": within 20% of the usage endpoint's delay.
      targets.push({
        what: `status, ${n} account(s), stale usage (concurrent fetch)`,
        target: `about one request: <= ${USAGE_DELAY_MS * 1.2} ms`,
        measured: `${ms(cold.median)} ms`,
        met: cold.median <= USAGE_DELAY_MS * 1.2 && calls.min === n,
      });
      targets.push({
        what: `status, ${n} account(s), fresh usage cached`,
        target: "< 10 ms, no usage call",
        measured: `${ms(fresh.median)} ms, ${freshCalls} calls`,
        met: fresh.median < 10 && freshCalls === 0,
      });
    }
    const markdown = [
      "## 4. Status",
      "",
      `The addon's \`status(sessionId, true)\`, in-process, with every usage call of the sim taking ${USAGE_DELAY_MS} ms`,
      "(`usageEndpoint.delayMs`). Stale: the accounts file has no usage, so every account is fetched (the results",
      "are in the pool at once and written in the background). Fresh: the same call right after, 5 times per run.",
      "",
      table(
        [
          "accounts",
          "stale: status(…, true)",
          "usage calls per stale status",
          "fresh: status(…, true)",
          "usage calls when fresh (all runs)",
        ],
        rows,
      ),
    ].join("\n");
    return { markdown, targets };
  },
};
