// 7. A session's first pick: time to first token of a session's first request when the pool's
// usage is stale (fetched, concurrently, before the pick), when it is fresh, and of a later request
// of a session that keeps its account (warm), next to one usage round trip straight at the sim.

import { requestOk } from "../client.ts";
import { accountIds, type Sim, seedSimAccounts, sleep, storedUsage, summarize, totalRequests } from "../lib.ts";
import { fmt, ms, type Target, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

interface Options {
  accounts: number;
  runs: number;
}

interface Result {
  stale: number[];
  fresh: number[];
  warm: number[];
  /** One usage call straight at the sim, ms. */
  roundTrip: number[];
  /** Usage calls a stale first request caused. */
  staleCalls: number[];
}

/** One `GET /wham/usage` as the core makes it, timed. */
async function usageRoundTrip(sim: Sim, accountId: string): Promise<number> {
  const start = performance.now();
  const response = await fetch(`${sim.backendBase}/wham/usage`, {
    headers: {
      authorization: `Bearer ${sim.startingTokens(accountId).access}`,
      "chatgpt-account-id": accountId,
      originator: "codex_cli_rs",
      "user-agent": "codex_cli_rs/0.139.0 (Linux; x86_64) pi-dispatch/bench",
    },
  });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`usage call answered ${response.status}`);
  return performance.now() - start;
}

export const scenario: Scenario<Options, Result> = {
  worker: {
    sim: ({ accounts }) => ({ accounts: accountIds(accounts).map((accountId) => ({ accountId })) }),
    async measure({ sim, agentDir, startProxy, newSession }, options) {
      const ids = accountIds(options.accounts);
      const staleUsage = () => {
        // Ten minutes old: past the five minutes usage stays fresh.
        const then = Date.now() - 10 * 60_000;
        seedSimAccounts(agentDir, sim, ids, (_, i) => ({ usage: storedUsage(then + (i + 1) * 86_400_000, then) }));
      };
      staleUsage();
      const { proxy } = await startProxy();
      const warmSession = newSession();
      await requestOk(proxy, warmSession);
      const result: Result = { stale: [], fresh: [], warm: [], roundTrip: [], staleCalls: [] };
      // Run 0 is a warm-up.
      for (let i = 0; i < options.runs + 1; i++) {
        // What the last replies taught is written in the background; let that land before the
        // file is replaced, or it would make the usage fresh again.
        await sleep(150);
        staleUsage();
        await sim.resetStats();
        const stale = await requestOk(proxy, newSession());
        const calls = totalRequests(await sim.stats()).usage;
        const fresh = await requestOk(proxy, newSession());
        const warm = await requestOk(proxy, warmSession);
        const roundTrip = await usageRoundTrip(sim, ids[0]);
        if (i > 0) {
          result.stale.push(stale.ttftMs);
          result.fresh.push(fresh.ttftMs);
          result.warm.push(warm.ttftMs);
          result.roundTrip.push(roundTrip);
          result.staleCalls.push(calls);
        }
      }
      return result;
    },
  },

  async run({ quick, log, inWorker }) {
    const accounts = 4;
    const runs = quick ? 5 : 40;
    log(`first pick: ${accounts} accounts, ${runs} runs of stale / fresh / warm first tokens`);
    const r = await inWorker({ accounts, runs });
    const stale = summarize(r.stale);
    const fresh = summarize(r.fresh);
    const warm = summarize(r.warm);
    const roundTrip = summarize(r.roundTrip);
    const calls = summarize(r.staleCalls);
    const staleAdded = stale.median - warm.median;
    const freshAdded = fresh.median - warm.median;
    const targets: Target[] = [
      {
        what: "first pick, stale usage: TTFT over a warm request (difference of medians)",
        target: `<= one usage round trip + 5 ms (${ms(roundTrip.median + 5)} ms)`,
        measured: `${ms(staleAdded)} ms, ${calls.min}–${calls.max} usage calls`,
        met: staleAdded <= roundTrip.median + 5 && calls.min === accounts,
      },
      {
        what: "first pick, fresh usage: TTFT over a warm request (difference of medians)",
        target: "+0 (< 1 ms)",
        measured: `${ms(freshAdded)} ms`,
        met: freshAdded < 1,
      },
    ];
    const markdown = [
      "## 7. A session's first pick",
      "",
      `pi's own Codex client through the proxy, ${accounts} accounts, a new session id per first request. Stale: the`,
      "accounts file holds usage ten minutes old, so the first request waits for every account's usage (fetched",
      "at once) before the policy picks. Fresh: the next new session, right after. Warm: a session that keeps its",
      "account. A usage round trip is one `GET /wham/usage` straight at the simulator from the same process.",
      "",
      table(
        ["figure", "time to first token", "over warm (median − median)"],
        [
          ["stale usage, first request", fmt(stale), `${ms(staleAdded)} ms`],
          ["fresh usage, first request", fmt(fresh), `${ms(freshAdded)} ms`],
          ["warm (the session's account kept)", fmt(warm), "—"],
          ["one usage round trip", fmt(roundTrip), "—"],
          ["usage calls per stale first request", `${calls.min}–${calls.max}`, "—"],
        ],
      ),
    ].join("\n");
    return { markdown, targets };
  },
};
