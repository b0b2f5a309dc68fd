// 2. Rotation cost: k usage-limited accounts ahead of a healthy one, each upstream answer 50 ms.

import { requestOk } from "../client.ts";
import {
  accountIds,
  type SimStats,
  seedSimAccounts,
  sleep,
  storedUsage,
  sum,
  summarize,
  totalRequests,
} from "../lib.ts";
import { postResponses } from "../plain-client.ts";
import { fmt, ms, type Target, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

interface Options {
  runs: number;
  ks: number[];
}

interface KRuns {
  k: number;
  /** TTFT of the request that must rotate k times, and of the next one (another session). */
  first: number[];
  second: number[];
  /** Model requests the sim saw for the first request, one count a run. */
  upstreamFirst: number[];
  /** Requests the second one sent to the k accounts the first one benched, one count a run. */
  benchedHitSecond: number[];
}

interface Result {
  /** An `ok` reply straight from the sim to pi's client (TTFT). */
  roundTrip: number[];
  /** A 429 straight from the sim to a plain `fetch` (status and body). */
  limitedRoundTrip: number[];
  byK: KRuns[];
}

const LIMITED = accountIds(10, "limited");
const HEALTHY = "healthy";

export const scenario: Scenario<Options, Result> = {
  worker: {
    sim: () => ({
      latencyMs: 50,
      accounts: [
        ...LIMITED.map((accountId) => ({ accountId, default: { kind: "usageLimit", resetsInSeconds: 3600 } })),
        { accountId: HEALTHY, default: { kind: "ok", text: "hello from the healthy one", deltas: 5 } },
      ],
    }),
    async measure({ sim, agentDir, startProxy, direct, newSession }, { runs, ks }) {
      const { proxy } = await startProxy();
      const seedFor = (k: number) => {
        const now = Date.now();
        // Weekly resets ordered so the policy tries the limited accounts first, the healthy one last.
        seedSimAccounts(agentDir, sim, [...LIMITED.slice(0, k), HEALTHY], (id, index) => ({
          usage: storedUsage(id === HEALTHY ? now + 6 * 86400_000 : now + 86400_000 + index * 3600_000, now),
        }));
      };
      const countsFor = (stats: SimStats, ids: string[]) => ids.map((id) => stats.accounts[id]?.responses ?? 0);

      // One upstream round trip, as pi sees it without the proxy: the baseline of the target.
      const roundTrip: number[] = [];
      for (let i = 0; i < runs + 3; i++) {
        const timing = await requestOk(direct(HEALTHY), newSession());
        if (i >= 3) roundTrip.push(timing.ttftMs);
      }

      // One round trip of a failing account, as a plain client sees it: the 429 and its body.
      const limitedRoundTrip: number[] = [];
      for (let i = 0; i < runs + 3; i++) {
        const start = performance.now();
        const response = await postResponses(direct(LIMITED[0]), LIMITED[0]);
        await response.text();
        if (response.status !== 429) throw new Error(`expected a 429 from ${LIMITED[0]}, got ${response.status}`);
        if (i >= 3) limitedRoundTrip.push(performance.now() - start);
      }

      const byK: KRuns[] = [];
      for (const k of ks) {
        const r: KRuns = { k, first: [], second: [], upstreamFirst: [], benchedHitSecond: [] };
        for (let i = 0; i < runs + 1; i++) {
          seedFor(k);
          await sleep(20);
          await sim.resetStats();
          const a = await requestOk(proxy, newSession());
          const afterFirst = await sim.stats();
          await sim.resetStats();
          // Another session: the accounts benched by the first request must not be asked again.
          const b = await requestOk(proxy, newSession());
          const afterSecond = await sim.stats();
          // Run 0 is a warm-up: its first request opens the connections.
          if (i > 0) {
            r.first.push(a.ttftMs);
            r.second.push(b.ttftMs);
            r.upstreamFirst.push(totalRequests(afterFirst).responses);
            r.benchedHitSecond.push(sum(countsFor(afterSecond, LIMITED.slice(0, k))));
          }
          // The benches the proxy learned reach the file in the background; let that finish before
          // the next run seeds a fresh file.
          await sleep(150);
        }
        byK.push(r);
      }
      return { roundTrip, limitedRoundTrip, byK };
    },
  },

  async run({ quick, log, inWorker }) {
    const ks = [0, 1, 3, 10];
    const runs = quick ? 3 : 15;
    log(`rotation: k = ${ks.join(", ")}, ${runs} runs each, sim latency 50 ms`);
    const result = await inWorker({ runs, ks });
    const roundTrip = summarize(result.roundTrip);
    const limitedTrip = summarize(result.limitedRoundTrip);
    const targets: Target[] = [];
    const rows: string[][] = [];
    for (const r of result.byK) {
      const { k } = r;
      const first = summarize(r.first);
      const second = summarize(r.second);
      const bound = roundTrip.median + k * limitedTrip.median + 5;
      const upstream = summarize(r.upstreamFirst);
      const benchedHits = sum(r.benchedHitSecond);
      const perRetry = k > 0 ? `${ms((first.median - roundTrip.median) / k)} ms` : "—";
      rows.push([
        String(k),
        fmt(first),
        `${ms(bound)} ms`,
        perRetry,
        `${upstream.min}–${upstream.max} (expected ${k + 1})`,
        fmt(second),
        `${benchedHits} (of ${r.second.length} requests)`,
      ]);
      targets.push({
        what: `rotation, k=${k}: TTFT of the first request`,
        target: `<= ${k + 1} round trips + 5 ms = ${ms(bound)} ms`,
        measured: `${ms(first.median)} ms`,
        met: first.median <= bound && upstream.max === k + 1,
      });
      targets.push({
        what: `rotation, k=${k}: requests to accounts already benched (second request)`,
        target: "0",
        measured: String(benchedHits),
        met: benchedHits === 0,
      });
    }
    const markdown = [
      "## 2. Rotation cost",
      "",
      "k usage-limited accounts (429 `usage_limit_reached`) ahead of a healthy one; every `/codex/responses`",
      "answer of the sim waits 50 ms (`latencyMs: 50`). The seeded usage makes the policy try the limited",
      "accounts first (their weekly windows reset soonest). Each run seeds a fresh accounts file, sends one",
      "request through the proxy (it must rotate k times), then a second request from another session (it must",
      "go straight to the healthy account: the first one benched the others).",
      "",
      `One upstream round trip, measured: an \`ok\` reply straight from the sim to pi's client (TTFT) ${fmt(roundTrip)};`,
      `a 429 straight from the sim to a plain \`fetch\` (status and body) ${fmt(limitedTrip)}.`,
      "The bound is one `ok` round trip + k 429 round trips + 5 ms, with those medians.",
      "",
      table(
        [
          "k",
          "TTFT, first request",
          "bound",
          "per rotation",
          "upstream requests (first)",
          "TTFT, second request",
          "requests to benched accounts (second)",
        ],
        rows,
      ),
    ].join("\n");
    return { markdown, targets };
  },
};
