// Shared pieces of the end-to-end tests: the simulator as a child process, isolated pi homes, the
// accounts file seeded directly, and the real pi CLI of either generation.

import { type ChildProcess, spawn } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const EXTENSION = join(ROOT, "index.ts");
const SIM_BIN = join(ROOT, "target", "release", process.platform === "win32" ? "dispatch-sim.exe" : "dispatch-sim");

export type PiGeneration = "pi073" | "pi1";
export const GENERATIONS: PiGeneration[] = ["pi073", "pi1"];
// Where each generation's node and pi CLI are, written by scripts/setup-e2e.mjs;
// `npm run check:pi-latest` names another file, with the newest pi 1.x.
const TOOLS_FILE = process.env.PI_DISPATCH_E2E_TOOLS || join(ROOT, ".tools", "e2e.json");
export const TOOLS = JSON.parse(readFileSync(TOOLS_FILE, "utf8")) as Record<
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
  /** How its usage endpoints answer: `{delayMs, whamStatus, ...}` (see sim/README.md). */
  usageEndpoint?: Record<string, unknown>;
  /** Per-model limit families: `{id, limitName, models, usage}` (see sim/README.md). */
  families?: Record<string, unknown>[];
  credits?: Record<string, unknown>;
}

/** The simulated Codex backend and OAuth server (sim/), run as its own process; it exits when
 * this process does (`--exit-on-stdin-close`), so a crashed test or benchmark leaves none behind. */
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

  /** `more` adds top-level script keys, e.g. `device`. Several may share `dir`. */
  static async start(accounts: SimAccountScript[], dir: string, more: Record<string, unknown> = {}): Promise<Sim> {
    const scriptPath = join(mkdtempSync(join(dir, "sim-")), "script.json");
    writeFileSync(scriptPath, JSON.stringify({ ...more, accounts }));
    const child = spawn(SIM_BIN, ["--script", scriptPath, "--exit-on-stdin-close"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
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

  /** The tokens an account had when the simulator started. */
  startingTokens(accountId: string): SimTokens {
    const tokens = this.accounts[accountId];
    if (!tokens) throw new Error(`the sim has no account ${accountId}`);
    return tokens;
  }

  /** Every account's current tokens, including those minted by logins since the start. */
  async tokens(): Promise<Record<string, SimTokens>> {
    const response = await fetch(`${this.baseUrl}/__sim/tokens`);
    return (await response.json()) as Record<string, SimTokens>;
  }

  /** Replaces the account's behavior queue (and, when given, its default answer). */
  async setBehaviors(accountId: string, behaviors: Record<string, unknown>[], fallback?: Record<string, unknown>) {
    await this.#admin(`behaviors/${accountId}`, fallback ? { behaviors, default: fallback } : behaviors);
  }

  /** What the account reports from now on, in the script's `usage` shape. */
  async setUsage(accountId: string, usage: Record<string, unknown>): Promise<void> {
    await this.#admin(`usage/${accountId}`, usage);
  }

  /** Zeroes every counter and clears the request log. */
  async resetStats(): Promise<void> {
    await this.#admin("reset-stats", {});
  }

  async #admin(path: string, body: unknown): Promise<void> {
    const response = await fetch(`${this.baseUrl}/__sim/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`sim ${path} failed: ${response.status} ${await response.text()}`);
  }

  /** Makes the next browser sign-in consent as `accountId`. */
  async queueLogin(accountId: string): Promise<void> {
    const response = await fetch(`${this.baseUrl}/__sim/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ accountId }),
    });
    if (!response.ok) throw new Error(`queueing a login failed: ${response.status}`);
  }

  stop(): void {
    this.#child.stdin?.end();
    this.#child.kill();
  }
}

/** Authorization codes the tests saw; the secret scan looks for them in pi's output too. */
export const seenCodes: string[] = [];

/** Plays the user's consent in a browser: GETs the sign-in URL without following the issuer's
 * redirect and returns where it sends the browser. */
export async function consent(signInUrl: string): Promise<string> {
  const response = await fetch(signInUrl, { redirect: "manual" });
  const location = response.headers.get("location");
  if (response.status !== 302 || !location) throw new Error(`the issuer did not redirect: ${response.status}`);
  const code = new URL(location).searchParams.get("code");
  if (code) seenCodes.push(code);
  return location;
}

/** One run of the fake browser opener: how it was started, and how playing the browser went. */
export interface OpenerRun {
  /** Its arguments (after the interpreter and the script). */
  argv: string[];
  /** Its whole environment as it received it (`/proc/self/environ`), one `NAME=value` each. */
  environ: string[];
  /** Where the issuer sent the browser: the callback URL, carrying the authorization code. */
  location?: string;
  callbackStatus?: number;
  callbackPage?: string;
  /** Why it could not play the browser to the end. */
  error?: string;
}

/** Installs a fake `xdg-open` (fixtures/fake-opener.ts) in `dir`. Its `env` puts it first on
 * PATH and sets a display, so the extension starts it; `runs` waits until every run that started
 * has played the browser to the end (30 s at most) and returns them. Linux only. */
export function installFakeOpener(dir: string): { env: Record<string, string>; runs: () => Promise<OpenerRun[]> } {
  const bin = join(dir, "opener-bin");
  const records = join(dir, "opener-runs");
  mkdirSync(bin, { recursive: true });
  mkdirSync(records, { recursive: true });
  const fixture = pathToFileURL(join(ROOT, "__test__", "fixtures", "fake-opener.ts")).href;
  // Run by this very node, named in full (the PATH pi hands the opener may hold no node), and
  // straight from the shebang, so that what it records is what the extension's spawn passed.
  if (/\s/.test(process.execPath) || process.execPath.length > 250) {
    throw new Error(`node's path cannot go in a shebang (whitespace, or too long): ${process.execPath}`);
  }
  const script = `#!${process.execPath}\nimport(${JSON.stringify(fixture)}).then((m) => m.open(${JSON.stringify(records)}, process.argv.slice(2)));\n`;
  writeFileSync(join(bin, "xdg-open"), script, { mode: 0o755 });
  const read = (name: string) => JSON.parse(readFileSync(join(records, name), "utf8"));
  const runs = async (): Promise<OpenerRun[]> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const names = readdirSync(records);
      const started = names.filter((name) => name.endsWith(".started.json"));
      const done = started.every((name) => names.includes(name.replace(".started.", ".done.")));
      if ((started.length > 0 && done) || Date.now() > deadline) {
        return started.map((name) => {
          const outcome = names.includes(name.replace(".started.", ".done."))
            ? read(name.replace(".started.", ".done."))
            : { error: "it never finished" };
          return { ...read(name), ...outcome } as OpenerRun;
        });
      }
      await new Promise((wake) => setTimeout(wake, 100));
    }
  };
  return { env: { PATH: `${bin}${delimiter}${process.env.PATH ?? ""}`, DISPLAY: ":99" }, runs };
}

export interface SimRequest {
  path: string;
  accountId: string;
  headers: Record<string, string>;
  /** The scripted behaviour that answered (`kind` plus its fields); null when auth refused. */
  behavior: { kind: string } | null;
  status: number;
  receivedAtMs: number;
  /** The request body as JSON, after undoing its content encoding; null if it is not JSON. */
  bodyJson: unknown;
  /** The body bytes exactly as received, and their `content-encoding`. */
  rawBodyBase64: string;
  contentEncoding: string | null;
  /** `inFlight`, `finished`, `clientDisconnected` or `cutBySim`. */
  outcome: string;
}

/** One account's counters (see sim/README.md). */
export interface SimAccountCounts {
  responses: number;
  served: number;
  whamUsage: number;
  codexUsage: number;
  me: number;
  tokenRefresh: number;
  tokenAuthorizationCode: number;
  behaviors: Record<string, number>;
  /** 400s for another account's ciphertext in `input`. */
  encryptedContentRefused: number;
  /** Requests the limits refused with a 429, and requests past a spent window paid from credits. */
  limitRefused: number;
  creditServed: number;
}

export interface SimStats {
  accounts: Record<string, SimAccountCounts>;
  global: Record<string, number>;
  requests: SimRequest[];
}

/** A throwaway HOME and agent directory; pi never sees the real ones. */
export function makeHome(): { home: string; agentDir: string; cleanup: () => void } {
  const home = mkdtempSync(join(tmpdir(), "pi-dispatch-e2e-"));
  const agentDir = join(home, "agent");
  mkdirSync(agentDir, { recursive: true, mode: 0o700 });
  return { home, agentDir, cleanup: () => rmSync(home, { recursive: true, force: true }) };
}

/** A usage window as the store keeps it (src/store.rs `UsageWindow`). */
export interface SeedWindow {
  windowSeconds?: number;
  usedPercent: number;
  resetsAtMs?: number;
  name?: string;
}

export interface SeedAccount {
  label: string;
  accountId: string;
  tokens: SimTokens;
  state?: Record<string, unknown>;
  /** The last usage seen (src/store.rs `Usage`); left out, the account has none yet. */
  usage?: { observedAtMs: number; windows: SeedWindow[] };
}

/** A session and the account that served it last (src/domain/account.rs `SessionBinding`). */
export interface SeedBinding {
  session: string;
  /** The account's `accountId`, as in its `SeedAccount`. */
  accountId: string;
  servedAtMs: number;
}

/** Writes dispatch.json (schema version 1) the way the native store would, atomically. */
export function seedAccounts(agentDir: string, accounts: SeedAccount[], sessions: SeedBinding[] = []): void {
  const localId = (accountId: string) => {
    const index = accounts.findIndex((a) => a.accountId === accountId);
    if (index < 0) throw new Error(`a session is bound to ${accountId}, which is not seeded`);
    return `acc-test-${index}`;
  };
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
      ...(account.usage ? { usage: account.usage } : {}),
      addedAtMs: Date.now(),
    })),
    ...(sessions.length > 0
      ? {
          sessions: sessions.map(({ session, accountId, servedAtMs }) => ({
            session,
            accountId: localId(accountId),
            servedAtMs,
          })),
        }
      : {}),
  };
  const path = join(agentDir, "dispatch.json");
  const temp = `${path}.seed-${process.pid}`;
  writeFileSync(temp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temp, 0o600);
  // A rename, as the store does: a proxy reading meanwhile never sees half a file.
  renameSync(temp, path);
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

/** Runs the real pi CLI of one generation with nothing from the caller's environment but PATH.
 * `nodeArgs` go to its node before the CLI (the benchmarks preload a CPU-time reporter). */
export function runPi(
  generation: PiGeneration,
  args: string[],
  options: PiOptions & { timeoutMs?: number; nodeArgs?: string[] },
): Promise<PiRun> {
  const tool = TOOLS[generation];
  const env = piEnv(options);
  return new Promise((resolveRun, reject) => {
    const child = spawn(tool.node, [...(options.nodeArgs ?? []), tool.cli, ...args], {
      cwd: options.home,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
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

/** Every token the simulator handed out (at its start or in a login since) and every
 * authorization code a test saw. */
export async function knownSecrets(sim: Sim): Promise<string[]> {
  const tokenSets = [...Object.values(sim.accounts), ...Object.values(await sim.tokens())];
  return [...tokenSets.flatMap((t) => [t.access, t.refresh, t.idToken]), ...seenCodes];
}

/** Fails, without showing it, if any of `texts` holds a secret from [`knownSecrets`]. */
export async function assertNoSecretIn(sim: Sim, texts: string[], where: string): Promise<void> {
  const secrets = await knownSecrets(sim);
  for (const text of texts) {
    for (const secret of secrets) {
      if (text.includes(secret)) throw new Error(`a token or authorization code leaked into ${where}`);
    }
  }
}

/** Fails if anything any pi process printed so far holds a token the simulator handed out (at
 * its start or in a login since) or an authorization code a test saw. */
export async function assertNoSecretPrinted(sim: Sim): Promise<void> {
  if (transcripts.length === 0) throw new Error("no pi output was collected");
  await assertNoSecretIn(sim, transcripts, "pi's output");
}

export type RpcMessage = Record<string, unknown> & { type: string };
/** What a test answers to one dialog: `{ value }`, `{ confirmed }` or `{ cancelled: true }`. */
export type DialogAnswer = { value: string } | { confirmed: boolean } | { cancelled: true };

/** The real pi in `--mode rpc`: JSON lines in and out, dialogs answered by the test. */
export class RpcPi {
  readonly messages: RpcMessage[] = [];
  readonly #child: ChildProcess;
  #stdout = "";
  #stderr = "";
  #nextId = 0;
  #waiters: (() => void)[] = [];
  #closed: Promise<void>;

  constructor(generation: PiGeneration, args: string[], options: PiOptions) {
    const tool = TOOLS[generation];
    this.#child = spawn(tool.node, [tool.cli, "--mode", "rpc", ...args], {
      cwd: options.home,
      env: piEnv(options),
      stdio: ["pipe", "pipe", "pipe"],
    });
    const lines = createInterface({ input: this.#child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      this.#stdout += `${line}\n`;
      try {
        const message = JSON.parse(line) as RpcMessage;
        if (typeof message.type === "string") this.messages.push(message);
      } catch {
        // Not protocol: kept in the transcript only.
      }
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.#child.stderr?.on("data", (chunk) => {
      this.#stderr += chunk;
    });
    this.#closed = new Promise((resolveClosed) => {
      this.#child.once("close", () => {
        transcripts.push(this.#stdout, this.#stderr);
        for (const wake of this.#waiters.splice(0)) wake();
        resolveClosed();
      });
    });
  }

  send(command: Record<string, unknown>): void {
    this.#child.stdin?.write(`${JSON.stringify(command)}\n`);
  }

  /** The first message from index `from` on that matches, waiting up to `timeoutMs`. */
  async waitFor(match: (m: RpcMessage) => boolean, from = 0, timeoutMs = 30_000): Promise<RpcMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(match);
      if (found) return found;
      if (this.#child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`pi (rpc) never sent the expected message. stderr:\n${this.#stderr}`);
      }
      await new Promise<void>((wake) => {
        this.#waiters.push(wake);
        setTimeout(wake, 200);
      });
    }
  }

  /** Runs a slash command, answering each dialog it opens with `answer(dialog, notices)`, where
   * `notices` are the notifications shown so far. Resolves with every notification of the
   * command once pi reports the command done. */
  async command(text: string, answer: (dialog: RpcMessage, notices: string[]) => Promise<DialogAnswer> | DialogAnswer) {
    const id = `cmd-${this.#nextId++}`;
    const from = this.messages.length;
    this.send({ type: "prompt", id, message: text });
    const answered = new Set<unknown>();
    const notices = () =>
      this.messages
        .slice(from)
        .filter((m) => m.type === "extension_ui_request" && m.method === "notify")
        .map((m) => String(m.message));
    for (;;) {
      const next = await this.waitFor(
        (m) =>
          (m.type === "response" && m.id === id) ||
          (m.type === "extension_ui_request" &&
            ["select", "input", "confirm", "editor"].includes(String(m.method)) &&
            !answered.has(m.id)),
        from,
      );
      if (next.type === "response") {
        if (next.success !== true) throw new Error(`${text} failed: ${JSON.stringify(next)}`);
        return notices();
      }
      answered.add(next.id);
      this.send({ type: "extension_ui_response", id: next.id, ...(await answer(next, notices())) });
    }
  }

  /** Sends a prompt to the model and resolves with the events up to the end of the agent's run. */
  async prompt(text: string, timeoutMs = 60_000): Promise<RpcMessage[]> {
    const from = this.messages.length;
    this.send({ type: "prompt", id: `prompt-${this.#nextId++}`, message: text });
    await this.waitFor((m) => m.type === "agent_end", from, timeoutMs);
    return this.messages.slice(from);
  }

  /** Closes pi's stdin (RPC mode then exits) and waits; kills it if it lingers. */
  async stop(): Promise<void> {
    this.#child.stdin?.end();
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 10_000);
    await this.#closed;
    clearTimeout(timer);
  }
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
  return modelsListed(run, provider);
}

/** The dispatch provider's model ids as this pi generation lists them from a scratch home. */
export async function dispatchModels(generation: PiGeneration): Promise<string[]> {
  const scratch = makeHome();
  try {
    return await listModels(generation, "dispatch", scratch);
  } finally {
    scratch.cleanup();
  }
}

/** The model ids of `provider` in the table a `pi --list-models` run printed. */
export function modelsListed(run: PiRun, provider: string): string[] {
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

/** How to start the real pi of one generation, isolated like every other run, in a terminal the
 * caller provides (the TUI tests' tmux). */
export function piCommand(
  generation: PiGeneration,
  args: string[],
  options: PiOptions,
): { argv: string[]; env: Record<string, string>; cwd: string } {
  const tool = TOOLS[generation];
  return { argv: [tool.node, tool.cli, ...args], env: piEnv(options), cwd: options.home };
}

/** The version of the pi that runs as `generation`: the nearest package.json above its CLI. */
export function piVersion(generation: PiGeneration): string {
  let dir = dirname(TOOLS[generation].cli);
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${TOOLS[generation].cli}`);
    dir = parent;
  }
  return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
}

/** pi in the caller's own terminal (the interactive demo), isolated like every other run. */
export function spawnPiInTerminal(generation: PiGeneration, args: string[], options: PiOptions): ChildProcess {
  const tool = TOOLS[generation];
  return spawn(tool.node, [tool.cli, ...args], { cwd: options.home, env: piEnv(options), stdio: "inherit" });
}
