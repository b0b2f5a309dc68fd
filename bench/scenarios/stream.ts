// 1. Stream overhead: pi's client straight at the sim and through the proxy, interleaved pair by pair.

import { requestOk } from "../client.ts";
import {
  accountIds,
  BIG_BYTES,
  comparePairs,
  interleaved,
  type Pair,
  type Summary,
  seedSimAccounts,
  summarize,
} from "../lib.ts";
import { comparedCells, fmt, ms, type Target, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

interface Options {
  /** Accounts in the pool; every one answers alike, the direct side always talks to the first. */
  accounts: number;
  pairs: number;
  bigPairs: number;
  bigBytes: number;
  /** Delta sizes (bytes) of the TTFT-by-size table, and its pairs per size. */
  deltaSizes: number[];
  sizePairs: number;
}

/** Each pair: `base` straight at the sim, `other` through the proxy. */
interface PhaseRuns {
  ttft: Pair[];
  total: Pair[];
  /** Characters of text in one reply. */
  chars: number;
}

interface Result {
  deltas200: PhaseRuns;
  big: PhaseRuns;
  /** TTFT pairs by delta size. */
  sizes: Record<string, Pair[]>;
}

export const scenario: Scenario<Options, Result> = {
  worker: {
    sim: (options) => ({ accounts: accountIds(options.accounts).map((accountId) => ({ accountId })) }),
    async measure({ sim, agentDir, startProxy, direct, newSession }, options) {
      const ids = accountIds(options.accounts);
      const [id] = ids;
      // A bigger pool means a bigger accounts file read on each request.
      seedSimAccounts(agentDir, sim, ids);
      const { proxy } = await startProxy();
      const straight = direct(id);
      const phase = async (behavior: Record<string, unknown>, pairs: number, warmup: number): Promise<PhaseRuns> => {
        if (pairs > 0) for (const each of ids) await sim.setBehaviors(each, [], behavior);
        const { ttft, total, last } = await interleaved(
          { pairs, warmup },
          () => requestOk(straight, newSession()),
          () => requestOk(proxy, newSession()),
        );
        return { ttft, total, chars: last?.chars ?? 0 };
      };
      const deltas200 = await phase({ kind: "ok", text: "0123456789".repeat(200), deltas: 200 }, options.pairs, 5);
      const big = await phase({ kind: "big", bytes: options.bigBytes }, options.bigPairs, 2);
      // TTFT by the size of each delta: 20 deltas of the given size, direct first.
      const sizes: Record<string, Pair[]> = {};
      for (const size of options.deltaSizes) {
        await sim.setBehaviors(id, [], { kind: "ok", text: "y".repeat(size * 20), deltas: 20 });
        const pairs: Pair[] = [];
        for (let i = 0; i < 3 + options.sizePairs; i++) {
          const a = await requestOk(straight, newSession());
          const b = await requestOk(proxy, newSession());
          if (i >= 3) pairs.push({ base: a.ttftMs, other: b.ttftMs });
        }
        sizes[String(size)] = pairs;
      }
      return { deltas200, big, sizes };
    },
  },

  async run({ quick, log, inWorker }) {
    const pairs = quick ? 10 : 60;
    const bigPairs = quick ? 3 : 30;
    const sizePairs = quick ? 5 : 40;
    const deltaSizes = [10, 1000, 4000, 8000, 16000, 32000];
    log(`stream overhead: ${pairs} pairs of 200-delta replies, ${bigPairs} pairs of 50 MB replies`);
    const result = await inWorker({ accounts: 1, pairs, bigPairs, bigBytes: BIG_BYTES, deltaSizes, sizePairs });
    log(`stream overhead: ${pairs} pairs of 200-delta replies with 50 accounts in the pool`);
    const pool50 = await inWorker({
      accounts: 50,
      pairs,
      bigPairs: 0,
      bigBytes: BIG_BYTES,
      deltaSizes: [],
      sizePairs: 0,
    });
    const targets: Target[] = [];
    const rows: string[][] = [];
    const ttftAddedOf = (runs: PhaseRuns) => {
      const ttft = comparePairs(runs.ttft);
      return ttft.other.median - ttft.base.median;
    };
    for (const [runs, label, throughput] of [
      [result.deltas200, "200 deltas (2 KB of text)", false],
      [pool50.deltas200, "200 deltas, 50 accounts in the pool", false],
      [result.big, "`big` 50 MB", true],
    ] as const) {
      const ttft = comparePairs(runs.ttft);
      const total = comparePairs(runs.total);
      const ttftAdded = ttft.other.median - ttft.base.median;
      rows.push([label, "TTFT", ...comparedCells(ttft)], [label, "total", ...comparedCells(total)]);
      targets.push({
        what: `stream overhead, ${label}: TTFT added (difference of medians)`,
        target: "< 1 ms",
        measured: `${ms(ttftAdded)} ms`,
        met: ttftAdded < 1,
      });
      if (throughput) {
        const mbps = (totals: number[]): Summary => summarize(totals.map((t) => runs.chars / 1e6 / (t / 1000)));
        const ratio = total.base.median / total.other.median;
        const rate = (s: Summary) => fmt(s, "MB/s", (v) => v.toFixed(0));
        rows.push([
          label,
          "throughput (MB/s of text)",
          rate(mbps(runs.total.map((p) => p.base))),
          rate(mbps(runs.total.map((p) => p.other))),
          `${(ratio * 100).toFixed(1)}% of direct`,
          "—",
        ]);
        targets.push({
          what: "stream overhead, 50 MB: proxy throughput vs direct (ratio of median totals)",
          target: ">= 95%",
          measured: `${(ratio * 100).toFixed(1)}%`,
          met: ratio >= 0.95,
        });
      }
    }
    // The parsed accounts file is kept by its identity: 50 accounts cost a request no more than 1.
    const poolAdded = ttftAddedOf(pool50.deltas200) - ttftAddedOf(result.deltas200);
    targets.push({
      what: "stream overhead, 50 accounts in the pool vs 1: TTFT added, difference",
      target: "< 0.5 ms",
      measured: `${ms(poolAdded)} ms`,
      met: poolAdded < 0.5,
    });
    const markdown = [
      "## 1. Stream overhead",
      "",
      "pi's own Codex client (`streamSimpleOpenAICodexResponses` of pi-ai 0.73.1) in one process with the",
      "addon, as in pi: straight at the simulator (`baseUrl` = the sim, the sim's access token) and through the",
      "`dispatch` proxy (`baseUrl` = the proxy, the proxy credential), interleaved pair by pair, the order",
      "alternating. TTFT = request start to the first `text_delta` pi's client emits; total = to the end of the",
      "stream. A new session id per request, SSE transport (see Method). Warm-up pairs are dropped. One account",
      "in the pool, except in the second row: a 50-account `dispatch.json`, which the proxy parses once and then",
      "only checks (`stat`) on each request (the policy then spreads new sessions over all 50).",
      "",
      table(
        ["reply", "figure", "direct", "through proxy", "added (median − median)", "per pair (proxy − direct)"],
        rows,
      ),
      "",
      "TTFT by the size of each delta (replies of 20 deltas, one account, interleaved pairs; no target). Through",
      "the proxy a large first event reaches the client later the larger it is; real first deltas are a few bytes:",
      "",
      table(
        ["delta size", "direct", "through proxy", "added (median − median)", "per pair (proxy − direct)"],
        deltaSizes.map((size) => [`${size} B`, ...comparedCells(comparePairs(result.sizes[String(size)]))]),
      ),
    ].join("\n");
    return { markdown, targets };
  },
};
