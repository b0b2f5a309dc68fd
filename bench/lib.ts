// Shared pieces of the benchmarks: throwaway agent directories with a seeded dispatch.json, request
// counts, statistics, the pi and Node versions. The simulator and pi's runner are the e2e harness's.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type PiGeneration,
  ROOT,
  type SeedAccount,
  type SeedBinding,
  type Sim,
  type SimStats,
  seedAccounts,
  TOOLS,
} from "../__test__/harness.ts";

export {
  EXTENSION,
  GENERATIONS,
  modelsListed,
  type PiGeneration,
  type PiRun,
  ROOT,
  runPi,
  type SeedBinding,
  Sim,
  type SimAccountScript,
  type SimStats,
} from "../__test__/harness.ts";

/** The size of the `big` reply of sections 1 and 6. */
export const BIG_BYTES = 50_000_000;

/** Every request the sim saw, all accounts together: model calls, usage calls, token calls. */
export function totalRequests(stats: SimStats): { responses: number; usage: number; token: number; me: number } {
  const sum = { responses: 0, usage: 0, token: 0, me: 0 };
  for (const counts of Object.values(stats.accounts)) {
    sum.responses += counts.responses;
    sum.usage += counts.whamUsage + counts.codexUsage;
    sum.token += counts.tokenRefresh + counts.tokenAuthorizationCode;
    sum.me += counts.me;
  }
  return sum;
}

export function makeDir(prefix: string): { dir: string; cleanup: () => Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), `pi-dispatch-bench-${prefix}-`));
  // The proxy writes dispatch.json in the background (a temp file, then a rename), and it may still
  // be at it when a scenario ends, putting a file back into a directory being removed: start over
  // until its writes are done.
  const cleanup = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        rmSync(dir, { recursive: true, force: true });
        return;
      } catch (error) {
        if (attempt === 20) throw error;
        await sleep(100);
      }
    }
  };
  return { dir, cleanup };
}

export function makeAgentDir(parent: string, name = "agent"): string {
  const agentDir = join(parent, name);
  mkdirSync(agentDir, { recursive: true, mode: 0o700 });
  return agentDir;
}

/** Writes dispatch.json (through the e2e harness's writer) with these accounts of `sim`, with their
 * starting tokens, each labelled by its id; `extra` adds a state or stored usage, `sessions` the
 * accounts that served sessions. */
export function seedSimAccounts(
  agentDir: string,
  sim: Sim,
  ids: string[],
  extra: (id: string, index: number) => Pick<SeedAccount, "state" | "usage"> = () => ({}),
  sessions: SeedBinding[] = [],
): void {
  seedAccounts(
    agentDir,
    ids.map((accountId, index) => ({
      label: accountId,
      accountId,
      tokens: sim.startingTokens(accountId),
      ...extra(accountId, index),
    })),
    sessions,
  );
}

/** A usage view in the store's shape: 5-hour and weekly windows, partly used. */
export function storedUsage(weeklyResetsAtMs: number, now = Date.now()): NonNullable<SeedAccount["usage"]> {
  return {
    observedAtMs: now,
    windows: [
      { windowSeconds: 5 * 3600, usedPercent: 10, resetsAtMs: now + 3600_000 },
      { windowSeconds: 7 * 24 * 3600, usedPercent: 20, resetsAtMs: weeklyResetsAtMs },
    ],
  };
}

export function accountIds(n: number, prefix = "acct"): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
}

/** Runs this very Node with `args`, its stderr passed through; resolves with its stdout and exit
 * code once it has exited (killed after `timeoutMs`, when given). */
export function runNode(
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<{ stdout: string; code: number | null }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    const timer = options.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), options.timeoutMs) : undefined;
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolveRun({ stdout, code });
    });
  });
}

export function piVersion(generation: PiGeneration): string {
  const pkg = join(TOOLS[generation].cli, "..", "..", generation === "pi1" ? ".." : "", "package.json");
  return (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
}

export function nodeVersion(generation: PiGeneration): string {
  return execFileSync(TOOLS[generation].node, ["-p", "process.versions.node"]).toString().trim();
}

// ---- Statistics ----

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(values: number[]): Summary {
  if (values.length === 0) throw new Error("no values to summarize");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

/** One figure of a pair of runs: the baseline's and the one compared with it. */
export interface Pair {
  base: number;
  other: number;
}

/** What a timed run reports, ms. */
export interface Timed {
  ttftMs: number;
  totalMs: number;
}

/** `pairs` pairs of runs of `base` and `other`, taking turns to go first so neither always runs on
 * a warmer machine, after `warmup` pairs that are dropped; `before` and `after` run around each
 * pair (untimed). Also the last run of `other` (none when `pairs` is 0: then nothing runs). */
export async function interleaved<T extends Timed>(
  runs: { pairs: number; warmup: number; before?: () => Promise<void>; after?: () => Promise<void> },
  base: () => Promise<T>,
  other: () => Promise<T>,
): Promise<{ ttft: Pair[]; total: Pair[]; last?: T }> {
  const ttft: Pair[] = [];
  const total: Pair[] = [];
  let last: T | undefined;
  if (runs.pairs === 0) return { ttft, total };
  for (let i = 0; i < runs.warmup + runs.pairs; i++) {
    await runs.before?.();
    const baseFirst = i % 2 === 0;
    const first = await (baseFirst ? base : other)();
    const second = await (baseFirst ? other : base)();
    await runs.after?.();
    const [b, o] = baseFirst ? [first, second] : [second, first];
    last = o;
    if (i >= runs.warmup) {
      ttft.push({ base: b.ttftMs, other: o.ttftMs });
      total.push({ base: b.totalMs, other: o.totalMs });
    }
  }
  return { ttft, total, last };
}

/** Both sides of `pairs` summarized, and the difference within each pair (other − base). */
export function comparePairs(pairs: Pair[]): { base: Summary; other: Summary; perPair: Summary } {
  return {
    base: summarize(pairs.map((p) => p.base)),
    other: summarize(pairs.map((p) => p.other)),
    perPair: summarize(pairs.map((p) => p.other - p.base)),
  };
}

export function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((wake) => setTimeout(wake, ms));
}

/** RSS figures of this process from /proc (Linux): current and the high-water mark since the last
 * reset, in bytes. */
export function procMemory(): { rss: number; hwm: number } {
  const status = readFileSync("/proc/self/status", "utf8");
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    if (!match) throw new Error(`/proc/self/status has no ${name}`);
    return Number(match[1]) * 1024;
  };
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/** Resets the peak-RSS mark (VmHWM) of this process to its current RSS. */
export function resetPeakRss(): void {
  writeFileSync("/proc/self/clear_refs", "5");
}
