// 3. All accounts exhausted: every account benched and known so; pi's error should come at once.

import { request } from "../client.ts";
import { accountIds, seedSimAccounts, summarize, totalRequests } from "../lib.ts";
import { fmt, ms, type Target, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

interface Options {
  runs: number;
  /** Pool sizes, one after the other in the same worker. */
  counts: number[];
}

interface PoolRuns {
  accounts: number;
  /** Request to the `error` event of pi's client, one a run. */
  times: number[];
  /** Requests the sim saw over all runs. */
  upstream: ReturnType<typeof totalRequests>;
  /** pi's error message. */
  message: string;
}

export const scenario: Scenario<Options, PoolRuns[]> = {
  worker: {
    sim: ({ counts }) => ({ accounts: accountIds(Math.max(...counts)).map((accountId) => ({ accountId })) }),
    async measure({ sim, agentDir, startProxy, newSession }, { runs, counts }) {
      const { proxy } = await startProxy();
      const out: PoolRuns[] = [];
      for (const n of counts) {
        const until = Date.now() + 3600_000;
        seedSimAccounts(agentDir, sim, accountIds(n), () => ({
          state: { kind: "benched", untilMs: until, reason: "usage limit reached" },
        }));
        await sim.resetStats();
        const times: number[] = [];
        let message = "";
        for (let i = 0; i < runs + 3; i++) {
          const timing = await request(proxy, newSession());
          if (timing.error === undefined) throw new Error("expected pi's client to report an error");
          message = timing.error;
          if (i >= 3) times.push(timing.totalMs);
        }
        out.push({ accounts: n, times, upstream: totalRequests(await sim.stats()), message });
      }
      return out;
    },
  },

  async run({ quick, log, inWorker }) {
    const counts = [1, 3, 10];
    const runs = quick ? 10 : 40;
    log(`all exhausted: ${counts.join(", ")} accounts, ${runs} runs each`);
    const result = await inWorker({ runs, counts });
    const targets: Target[] = [];
    const rows: string[][] = [];
    for (const r of result) {
      const s = summarize(r.times);
      rows.push([String(r.accounts), fmt(s), String(r.upstream.responses + r.upstream.usage + r.upstream.token)]);
      targets.push({
        what: `all exhausted, ${r.accounts} account(s): request to pi's error`,
        target: "< 50 ms",
        measured: `${ms(s.median)} ms (max ${ms(s.max)})`,
        met: s.median < 50,
      });
    }
    const message = result.find((r) => r.accounts === 3)?.message ?? "";
    const markdown = [
      "## 3. All accounts exhausted",
      "",
      "Every account benched (usage limit, back in an hour) in the accounts file. Time from the request to the",
      "`error` event of pi's client.",
      "",
      table(["accounts", "request → pi's error", "upstream requests (all runs)"], rows),
      "",
      `pi's error with 3 accounts: \`${message.replace(/`/g, "'")}\``,
    ].join("\n");
    return { markdown, targets };
  },
};
