// Shared pieces of the benchmarks: the simulator as a child process that dies with its parent,
// throwaway agent directories with a seeded dispatch.json, pi's own Codex client, and statistics.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type SeedAccount as HarnessSeedAccount, seedAccounts as seedHarnessAccounts } from "../__test__/harness.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const SIM_BIN = join(ROOT, "target", "release", "dispatch-sim");
export const EXTENSION = join(ROOT, "index.ts");

export interface SimTokens {
  access: string;
  refresh: string;
  idToken: string;
  expiresAtMs: number;
}

export interface SimReady {
  baseUrl: string;
  backendBase: string;
  issuer: string;
  accounts: Record<string, SimTokens>;
}

export interface AccountCounts {
  responses: number;
  served: number;
  whamUsage: number;
  codexUsage: number;
  me: number;
  tokenRefresh: number;
  tokenAuthorizationCode: number;
  behaviors: Record<string, number>;
}

export interface SimStats {
  accounts: Record<string, AccountCounts>;
  global: Record<string, number>;
}

/** The simulator (sim/), run with `--exit-on-stdin-close` so it never outlives the benchmark. */
export class Sim {
  readonly ready: SimReady;
  readonly #child: ChildProcess;

  private constructor(child: ChildProcess, ready: SimReady) {
    this.#child = child;
    this.ready = ready;
  }

  static async start(script: Record<string, unknown>, dir: string): Promise<Sim> {
    const path = join(dir, `sim-script-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
    // The request log keeps whole bodies; the benchmarks only read the counters.
    writeFileSync(path, JSON.stringify({ requestLogLimit: 16, ...script }));
    const child = spawn(SIM_BIN, ["--script", path, "--exit-on-stdin-close"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const ready = await new Promise<SimReady>((resolveReady, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`dispatch-sim exited early (${code})`)));
      lines.once("line", (line) => resolveReady(JSON.parse(line) as SimReady));
    });
    return new Sim(child, ready);
  }

  tokens(accountId: string): SimTokens {
    const tokens = this.ready.accounts[accountId];
    if (!tokens) throw new Error(`the sim has no account ${accountId}`);
    return tokens;
  }

  async stats(): Promise<SimStats> {
    return (await (await fetch(`${this.ready.baseUrl}/__sim/stats`)).json()) as SimStats;
  }

  async resetStats(): Promise<void> {
    await this.#post("/__sim/reset-stats", {});
  }

  /** Replaces an account's behaviour queue and default answer. */
  async setBehaviors(accountId: string, body: Record<string, unknown> | unknown[]): Promise<void> {
    await this.#post(`/__sim/behaviors/${accountId}`, body);
  }

  async #post(path: string, body: unknown): Promise<void> {
    const response = await fetch(`${this.ready.baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`sim ${path}: HTTP ${response.status} ${await response.text()}`);
    await response.arrayBuffer();
  }

  stop(): void {
    this.#child.stdin?.end();
    this.#child.kill();
  }
}

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

export function makeDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `pi-dispatch-bench-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function makeAgentDir(parent: string, name = "agent"): string {
  const agentDir = join(parent, name);
  mkdirSync(agentDir, { recursive: true, mode: 0o700 });
  return agentDir;
}

export interface SeedAccount {
  accountId: string;
  tokens: SimTokens;
  state?: Record<string, unknown>;
  usage?: Record<string, unknown>;
}

/** dispatch.json through the test harness's writer; the bench labels each account by its id. */
export function seedAccounts(agentDir: string, accounts: SeedAccount[]): void {
  seedHarnessAccounts(
    agentDir,
    accounts.map((account) => ({ ...account, label: account.accountId }) as HarnessSeedAccount),
  );
}

/** A usage view in the store's shape: 5-hour and weekly windows, partly used. */
export function storedUsage(weeklyResetsAtMs: number, now = Date.now()): Record<string, unknown> {
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
