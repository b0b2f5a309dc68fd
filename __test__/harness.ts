// Shared pieces of the end-to-end tests: the simulator as a child process, isolated pi homes, the
// accounts file seeded directly, and the real pi CLI of either generation.

import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const EXTENSION = join(ROOT, "index.ts");
const SIM_BIN = join(ROOT, "target", "release", process.platform === "win32" ? "dispatch-sim.exe" : "dispatch-sim");

export type PiGeneration = "pi073" | "pi1";
export const GENERATIONS: PiGeneration[] = ["pi073", "pi1"];
const TOOLS = JSON.parse(readFileSync(join(ROOT, ".tools", "e2e.json"), "utf8")) as Record<
  PiGeneration,
  { node: string; cli: string }
>;

export interface SimTokens {
  access: string;
  refresh: string;
  idToken: string;
  expiresAtMs: number;
}

export interface SimAccountScript {
  accountId: string;
  email?: string;
  plan?: string;
  usage?: Record<string, unknown>;
  default?: Record<string, unknown>;
  behaviors?: Record<string, unknown>[];
}

/** The simulated Codex backend and OAuth server (sim/), run as its own process. */
export class Sim {
  readonly baseUrl: string;
  readonly backendBase: string;
  readonly issuer: string;
  readonly accounts: Record<string, SimTokens>;
  readonly #child: ChildProcess;

  constructor(child: ChildProcess, ready: Record<string, unknown>) {
    this.#child = child;
    this.baseUrl = ready.baseUrl as string;
    this.backendBase = ready.backendBase as string;
    this.issuer = ready.issuer as string;
    this.accounts = ready.accounts as Record<string, SimTokens>;
  }

  static async start(accounts: SimAccountScript[], dir: string): Promise<Sim> {
    const scriptPath = join(dir, "sim-script.json");
    writeFileSync(scriptPath, JSON.stringify({ accounts }));
    const child = spawn(SIM_BIN, ["--script", scriptPath], { stdio: ["pipe", "pipe", "inherit"] });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const ready = await new Promise<Record<string, unknown>>((resolveReady, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`dispatch-sim exited early (${code})`)));
      lines.once("line", (line) => resolveReady(JSON.parse(line)));
    });
    return new Sim(child, ready);
  }

  async stats(): Promise<SimStats> {
    const response = await fetch(`${this.baseUrl}/__sim/stats`);
    return (await response.json()) as SimStats;
  }

  stop(): void {
    this.#child.kill();
  }
}

export interface SimRequest {
  path: string;
  accountId: string;
  headers: Record<string, string>;
  /** The scripted behaviour that answered (`kind` plus its fields); null when auth refused. */
  behavior: { kind: string } | null;
  status: number;
}

export interface SimStats {
  counts: Record<string, Record<string, number>>;
  requests: SimRequest[];
  [key: string]: unknown;
}

/** A throwaway HOME and agent directory; pi never sees the real ones. */
export function makeHome(): { home: string; agentDir: string; cleanup: () => void } {
  const home = mkdtempSync(join(tmpdir(), "pi-dispatch-e2e-"));
  const agentDir = join(home, "agent");
  mkdirSync(agentDir, { recursive: true, mode: 0o700 });
  return { home, agentDir, cleanup: () => rmSync(home, { recursive: true, force: true }) };
}

export interface SeedAccount {
  label: string;
  accountId: string;
  tokens: SimTokens;
  state?: Record<string, unknown>;
}

/** Writes dispatch.json (schema version 1) the way the native store would. */
export function seedAccounts(agentDir: string, accounts: SeedAccount[]): void {
  const file = {
    version: 1,
    accounts: accounts.map((account, index) => ({
      id: `acc-test-${index}`,
      label: account.label,
      chatgptAccountId: account.accountId,
      plan: "plus",
      tokens: {
        accessToken: account.tokens.access,
        refreshToken: account.tokens.refresh,
        idToken: account.tokens.idToken,
        expiresAtMs: account.tokens.expiresAtMs,
      },
      state: account.state ?? { kind: "usable" },
      addedAtMs: Date.now(),
    })),
  };
  const path = join(agentDir, "dispatch.json");
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export interface PiRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Everything every pi process printed in this test run, for the secret-leak check. */
export const transcripts: string[] = [];

/** Where a pi run lives, and what it gets in its environment besides the isolation. */
export interface PiOptions {
  home: string;
  agentDir: string;
  env?: Record<string, string>;
}

/** An isolated environment: nothing from the caller's but PATH. */
function piEnv(options: PiOptions): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    HOME: options.home,
    PI_CODING_AGENT_DIR: options.agentDir,
    PI_OFFLINE: "1",
    PI_TELEMETRY: "0",
    PI_SKIP_VERSION_CHECK: "1",
    ...options.env,
  };
}

/** Runs the real pi CLI of one generation with nothing from the caller's environment but PATH. */
export function runPi(
  generation: PiGeneration,
  args: string[],
  options: PiOptions & { timeoutMs?: number },
): Promise<PiRun> {
  const tool = TOOLS[generation];
  const env = piEnv(options);
  return new Promise((resolveRun, reject) => {
    const child = spawn(tool.node, [tool.cli, ...args], { cwd: options.home, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      transcripts.push(stdout, stderr);
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** Model ids listed by `pi --list-models <provider>`, read from the table pi prints. */
export async function listModels(
  generation: PiGeneration,
  provider: string,
  // `extension: null` loads only what pi has installed, not the source tree's entry.
  options: PiOptions & { extension?: string | null },
): Promise<string[]> {
  const extension = options.extension === null ? [] : ["-e", options.extension ?? EXTENSION];
  const run = await runPi(generation, [...extension, "--list-models", provider], options);
  return `${run.stdout}\n${run.stderr}`
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cells) => cells[0] === provider && cells[1])
    .map((cells) => cells[1]);
}

/** The ids of the running pi's own openai-codex catalog, read by a probe extension, since
 * `--list-models` only lists providers that have credentials. */
export async function codexCatalog(
  generation: PiGeneration,
  options: { home: string; agentDir: string },
): Promise<string[]> {
  const probe = join(ROOT, "__test__", "fixtures", "catalog-probe.ts");
  const run = await runPi(generation, ["-e", probe, "--list-models", "openai-codex"], options);
  const line = run.stderr.split("\n").find((l) => l.startsWith("PI_CODEX_CATALOG "));
  if (!line) throw new Error(`catalog probe printed nothing: ${run.stderr}`);
  return JSON.parse(line.slice("PI_CODEX_CATALOG ".length)) as string[];
}

/** A copy of the extension entry with no native binary beside it, as on an unsupported platform. */
export function extensionWithoutBinary(dir: string): string {
  const target = join(dir, "broken-install");
  mkdirSync(target, { recursive: true });
  cpSync(EXTENSION, join(target, "index.ts"));
  return join(target, "index.ts");
}

/** pi in the caller's own terminal (the interactive demo), isolated like every other run. */
export function spawnPiInTerminal(generation: PiGeneration, args: string[], options: PiOptions): ChildProcess {
  const tool = TOOLS[generation];
  return spawn(tool.node, [tool.cli, ...args], { cwd: options.home, env: piEnv(options), stdio: "inherit" });
}
