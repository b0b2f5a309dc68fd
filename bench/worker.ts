// One benchmark scenario in a process of its own, the way pi hosts the extension: the native addon
// (and so the proxy) lives in the same process as pi's Codex client. Started by bench/run.ts as
// `node bench/worker.ts <scenario> <json options>`; prints one `BENCH_RESULT <json>` line.

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import type * as Native from "../binding.d.cts";
import { request, requestOk, type Target } from "./client.ts";
import {
  accountIds,
  makeAgentDir,
  makeDir,
  procMemory,
  ROOT,
  resetPeakRss,
  type SeedAccount,
  Sim,
  type SimAccountScript,
  type SimStats,
  seedAccounts,
  sleep,
  storedUsage,
  totalRequests,
} from "./lib.ts";

type Options = Record<string, unknown>;
type Scenario = (sim: Sim, agentDir: string, options: Options) => Promise<unknown>;

/** Points the addon at the sim and the agent directory, loads it and starts the proxy, as the
 * extension does at pi's start. */
async function startNative(sim: Sim, agentDir: string): Promise<{ native: typeof Native; proxy: Target }> {
  process.env.PI_DISPATCH_BACKEND_URL = sim.backendBase;
  process.env.PI_DISPATCH_AUTH_URL = sim.issuer;
  process.env.PI_CODING_AGENT_DIR = agentDir;
  const native = createRequire(import.meta.url)(join(ROOT, "binding.cjs")) as typeof Native;
  const info = await native.startProxy();
  if ("kind" in info) throw new Error(info.message);
  return { native, proxy: { baseUrl: info.baseUrl, apiKey: info.apiKey } };
}

function direct(sim: Sim, accountId: string): Target {
  return { baseUrl: sim.backendBase, apiKey: sim.startingTokens(accountId).access };
}

function seed(sim: Sim, ids: string[], extra: (id: string, index: number) => Partial<SeedAccount> = () => ({})) {
  return ids.map((accountId, index) => ({
    accountId,
    tokens: sim.startingTokens(accountId),
    ...extra(accountId, index),
  }));
}

let sessionCounter = 0;
function newSession(): string {
  sessionCounter += 1;
  return `bench-${process.pid}-${sessionCounter}`;
}

/** 1. Stream overhead: the same client, straight at the sim and through the proxy, interleaved. */
const stream: Scenario = async (sim, agentDir, options) => {
  const ids = accountIds(Number(options.accounts ?? 1));
  const [id] = ids;
  // The pool may hold more accounts: each request then reads a bigger accounts file. Every
  // account answers alike; the direct side always talks to the first.
  seedAccounts(agentDir, seed(sim, ids));
  const { proxy } = await startNative(sim, agentDir);
  const straight = direct(sim, id);
  const phases: Record<string, { behavior: Record<string, unknown>; pairs: number; warmup: number }> = {
    deltas200: {
      behavior: { kind: "ok", text: "0123456789".repeat(200), deltas: 200 },
      pairs: Number(options.pairs),
      warmup: 5,
    },
    big: { behavior: { kind: "big", bytes: Number(options.bigBytes) }, pairs: Number(options.bigPairs), warmup: 2 },
  };
  const out: Record<string, unknown> = {};
  for (const [name, phase] of Object.entries(phases)) {
    if (phase.pairs === 0) continue;
    for (const each of ids) await sim.setBehaviors(each, [], phase.behavior);
    const runs = { direct: [] as number[][], proxy: [] as number[][] };
    let chars = 0;
    for (let i = 0; i < phase.warmup + phase.pairs; i++) {
      // Alternate which side goes first, so neither always runs on a warmer machine.
      const order: ("direct" | "proxy")[] = i % 2 === 0 ? ["direct", "proxy"] : ["proxy", "direct"];
      for (const side of order) {
        const timing = await requestOk(side === "direct" ? straight : proxy, newSession());
        chars = timing.chars;
        if (i >= phase.warmup) runs[side].push([timing.ttftMs, timing.totalMs]);
      }
    }
    out[name] = { ...runs, chars };
  }
  // TTFT by the size of each delta: 20 deltas of the given size, interleaved as above.
  const sizes: Record<string, number[][]> = {};
  for (const size of (options.deltaSizes as number[] | undefined) ?? []) {
    await sim.setBehaviors(id, [], { kind: "ok", text: "y".repeat(size * 20), deltas: 20 });
    const pairs: number[][] = [];
    for (let i = 0; i < 3 + Number(options.sizePairs); i++) {
      const a = await requestOk(straight, newSession());
      const b = await requestOk(proxy, newSession());
      if (i >= 3) pairs.push([a.ttftMs, b.ttftMs]);
    }
    sizes[String(size)] = pairs;
  }
  out.sizes = sizes;
  return out;
};

/** 6. Memory: peak RSS growth of this process while one big reply streams, in a fresh process. */
const memory: Scenario = async (sim, agentDir, options) => {
  const [id] = accountIds(1);
  seedAccounts(agentDir, seed(sim, [id]));
  // The addon is loaded on both sides, so only the streaming itself differs.
  const { proxy } = await startNative(sim, agentDir);
  const side = String(options.side);
  const target = side === "direct" ? direct(sim, id) : proxy;
  // Warm both paths (connections, code) with a small reply first.
  await sim.setBehaviors(id, [], { kind: "ok", text: "warm", deltas: 2 });
  await requestOk(target, newSession());
  await sim.setBehaviors(id, [], { kind: "big", bytes: Number(options.bytes) });
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await sleep(50);
  const before = procMemory();
  resetPeakRss();
  let received = 0;
  if (options.client === "external") {
    // The client in another process: this process only hosts the proxy.
    received = await externalFetch(target, id);
  } else if (options.client === "raw") {
    // The proxy alone: the bytes are read and dropped, so the client holds nothing.
    const response = await fetch(`${target.baseUrl}/codex/responses`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${target.apiKey}`,
        "chatgpt-account-id": id,
        "content-type": "application/json",
      },
      body: JSON.stringify({ model: "gpt-5.1", stream: true, input: [] }),
    });
    if (!response.ok || !response.body) throw new Error(`raw fetch failed: ${response.status}`);
    for await (const chunk of response.body) received += (chunk as Uint8Array).byteLength;
  } else {
    received = (await requestOk(target, newSession())).chars;
  }
  const after = procMemory();
  return {
    side,
    client: options.client,
    rssBefore: before.rss,
    peak: after.hwm,
    growth: after.hwm - before.rss,
    received,
  };
};

/** Streams one reply through `target` from a child Node process that drops the bytes; resolves
 * with how many bytes it read. */
function externalFetch(target: Target, accountId: string): Promise<number> {
  const code = `
    const [url, key, account] = process.argv.slice(1);
    const response = await fetch(url + "/codex/responses", {
      method: "POST",
      headers: { authorization: "Bearer " + key, "chatgpt-account-id": account, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-5.1", stream: true, input: [] }),
    });
    let n = 0;
    for await (const chunk of response.body) n += chunk.byteLength;
    console.log(response.status === 200 ? n : -response.status);
  `;
  return new Promise((resolveRead, reject) => {
    const child = spawn(
      process.execPath,
      ["--input-type=module", "-e", code, target.baseUrl, target.apiKey, accountId],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.once("error", reject);
    child.once("close", () => {
      const n = Number(out.trim());
      if (!(n > 0)) reject(new Error(`the external client failed: ${out}`));
      else resolveRead(n);
    });
  });
}

/** 2. Rotation: k usage-limited accounts ahead of a healthy one, each upstream call 50 ms. */
const rotation: Scenario = async (sim, agentDir, options) => {
  const limited = accountIds(10, "limited");
  const healthy = "healthy";
  const { proxy } = await startNative(sim, agentDir);
  const runs = Number(options.runs);
  const seedFor = (k: number) => {
    const now = Date.now();
    const ids = [...limited.slice(0, k), healthy];
    // Weekly resets ordered so the policy tries the limited accounts first, the healthy one last.
    seedAccounts(
      agentDir,
      seed(sim, ids, (id, index) => ({
        usage: storedUsage(id === healthy ? now + 6 * 86400_000 : now + 86400_000 + index * 3600_000, now),
      })),
    );
  };
  const countsFor = (stats: SimStats, ids: string[]) => ids.map((id) => stats.accounts[id]?.responses ?? 0);

  // One upstream round trip, as pi sees it without the proxy: the baseline of the target.
  const roundTrip: number[] = [];
  for (let i = 0; i < runs + 3; i++) {
    const timing = await requestOk(direct(sim, healthy), newSession());
    if (i >= 3) roundTrip.push(timing.ttftMs);
  }

  // One round trip of a failing account, as a plain client sees it: the 429 and its body.
  const limitedRoundTrip: number[] = [];
  for (let i = 0; i < runs + 3; i++) {
    const start = performance.now();
    const response = await fetch(`${sim.backendBase}/codex/responses`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${sim.startingTokens(limited[0]).access}`,
        "chatgpt-account-id": limited[0],
        "content-type": "application/json",
      },
      body: JSON.stringify({ model: "gpt-5.1", stream: true, input: [] }),
    });
    await response.text();
    if (response.status !== 429) throw new Error(`expected a 429 from ${limited[0]}, got ${response.status}`);
    if (i >= 3) limitedRoundTrip.push(performance.now() - start);
  }

  const out: Record<string, unknown> = { roundTrip, limitedRoundTrip };
  for (const k of (options.ks as number[]) ?? []) {
    const first: number[] = [];
    const second: number[] = [];
    const upstreamFirst: number[] = [];
    const benchedHitSecond: number[] = [];
    const upstreamSecond: number[] = [];
    for (let i = 0; i < runs + 1; i++) {
      seedFor(k);
      await sleep(20);
      await sim.resetStats();
      const session = newSession();
      const a = await requestOk(proxy, session);
      const afterFirst = await sim.stats();
      await sim.resetStats();
      // Another session: the accounts benched by the first request must not be asked again.
      const b = await requestOk(proxy, newSession());
      const afterSecond = await sim.stats();
      if (i === 0) {
        // Warm-up: the first request opens the connections.
      } else {
        first.push(a.ttftMs);
        second.push(b.ttftMs);
        upstreamFirst.push(totalRequests(afterFirst).responses);
        benchedHitSecond.push(countsFor(afterSecond, limited.slice(0, k)).reduce((x, y) => x + y, 0));
        upstreamSecond.push(totalRequests(afterSecond).responses);
      }
      // The benches the proxy learned reach the file in the background; let that finish before
      // the next run seeds a fresh file.
      await sleep(150);
    }
    out[`k${k}`] = { first, second, upstreamFirst, benchedHitSecond, upstreamSecond };
  }
  return out;
};

/** 3. All exhausted: every account benched and known so; pi's error should come at once. */
const exhausted: Scenario = async (sim, agentDir, options) => {
  const { proxy } = await startNative(sim, agentDir);
  const out: Record<string, unknown> = {};
  for (const n of options.counts as number[]) {
    const until = Date.now() + 3600_000;
    seedAccounts(
      agentDir,
      seed(sim, accountIds(n), () => ({
        state: { kind: "benched", untilMs: until, reason: "usage limit reached" },
      })),
    );
    await sim.resetStats();
    const times: number[] = [];
    let message = "";
    for (let i = 0; i < Number(options.runs) + 3; i++) {
      const timing = await request(proxy, newSession());
      if (timing.error === undefined) throw new Error("expected pi's client to report an error");
      message = timing.error;
      if (i >= 3) times.push(timing.totalMs);
    }
    out[`n${n}`] = { times, upstream: totalRequests(await sim.stats()), message };
  }
  return out;
};

/** 4. Status: `status(sessionId, true)` with stale usage (every account fetched, concurrently,
 * each usage call taking 300 ms) and again with fresh usage (nothing to fetch). */
const status: Scenario = async (sim, agentDir, options) => {
  const n = Number(options.accounts);
  const ids = accountIds(n);
  const { native } = await startNative(sim, agentDir);
  const session = newSession();
  const cold: number[] = [];
  const fresh: number[] = [];
  const coldCalls: number[] = [];
  const freshCalls: number[] = [];
  for (let i = 0; i < Number(options.runs) + 1; i++) {
    seedAccounts(agentDir, seed(sim, ids));
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
      cold.push(coldMs);
      fresh.push(...freshRuns);
      coldCalls.push(afterCold);
      freshCalls.push(afterFresh);
    }
  }
  return { accounts: n, cold, fresh, coldCalls, freshCalls };
};

const SCENARIOS: Record<string, { scenario: Scenario; script: (options: Options) => Record<string, unknown> }> = {
  stream: {
    scenario: stream,
    script: (options) => ({ accounts: accountIds(Number(options.accounts ?? 1)).map((accountId) => ({ accountId })) }),
  },
  memory: { scenario: memory, script: () => ({ accounts: [{ accountId: accountIds(1)[0] }] }) },
  rotation: {
    scenario: rotation,
    script: () => ({
      latencyMs: 50,
      accounts: [
        ...accountIds(10, "limited").map((accountId) => ({
          accountId,
          default: { kind: "usageLimit", resetsInSeconds: 3600 },
        })),
        { accountId: "healthy", default: { kind: "ok", text: "hello from the healthy one", deltas: 5 } },
      ],
    }),
  },
  exhausted: {
    scenario: exhausted,
    script: (options) => ({
      accounts: accountIds(Math.max(...(options.counts as number[]))).map((accountId) => ({ accountId })),
    }),
  },
  status: {
    scenario: status,
    script: (options) => ({
      accounts: accountIds(Number(options.accounts)).map((accountId) => ({
        accountId,
        usageEndpoint: { delayMs: Number(options.usageDelayMs) },
      })),
    }),
  },
};

async function main(): Promise<void> {
  const [name, json] = process.argv.slice(2);
  const entry = SCENARIOS[name ?? ""];
  if (!entry) throw new Error(`unknown scenario ${name}; one of ${Object.keys(SCENARIOS).join(", ")}`);
  const options = JSON.parse(json ?? "{}") as Options;
  const { dir, cleanup } = makeDir(name ?? "worker");
  const { accounts, ...more } = entry.script(options);
  // The request log keeps whole bodies; the benchmarks only read the counters.
  const sim = await Sim.start(accounts as SimAccountScript[], dir, { requestLogLimit: 16, ...more });
  try {
    const result = await entry.scenario(sim, makeAgentDir(dir), options);
    process.stdout.write(`BENCH_RESULT ${JSON.stringify(result)}\n`);
  } finally {
    sim.stop();
    cleanup();
  }
  // The proxy's listener keeps the event loop alive; this process is done.
  process.exit(0);
}

await main();
