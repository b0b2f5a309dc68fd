// What a scenario is, and the messages between the runner (bench/run.ts) and a worker process
// (bench/worker.ts). A scenario is one file, bench/scenarios/<name>.ts, exporting `scenario`; the
// runner and the worker both load it by that name.

import { join } from "node:path";
import type * as Native from "../binding.d.cts";
import type { Endpoint } from "./client.ts";
import { ROOT, runNode, type Sim, type SimAccountScript } from "./lib.ts";
import type { Section } from "./report.ts";

/** The simulator a worker starts for its scenario: the script's accounts and top-level keys. */
export interface SimScript {
  accounts: SimAccountScript[];
  latencyMs?: number;
  /** How many requests the sim's log keeps, bodies included (the worker's default is 16). */
  requestLogLimit?: number;
}

/** What a worker hands a scenario's `measure`: its own simulator and agent directory, and the
 * addon in this very process, as pi hosts the extension. */
export interface WorkerContext {
  sim: Sim;
  agentDir: string;
  /** Points the addon at the sim and the agent directory, loads it and starts the proxy, as the
   * extension does at pi's start. */
  startProxy(): Promise<{ native: typeof Native; proxy: Endpoint }>;
  /** Straight at the sim, with the account's own access token. */
  direct(accountId: string): Endpoint;
  /** A session id no request of this process used before. */
  newSession(): string;
}

/** The part of a scenario that runs in a fresh worker process. `Options` and `Result` cross the
 * process boundary as JSON, so they hold plain data only. */
export interface WorkerSide<Options, Result> {
  sim(options: Options): SimScript;
  measure(context: WorkerContext, options: Options): Promise<Result>;
}

/** What the runner hands a scenario's `run`. */
export interface RunContext<Options, Result> {
  /** `--quick`: few runs per figure. */
  quick: boolean;
  log(text: string): void;
  /** Runs the scenario's `worker.measure` in a fresh Node process and returns what it measured. */
  inWorker(options: Options): Promise<Result>;
}

export interface Scenario<Options = never, Result = never> {
  /** Present when some of the measuring must happen next to the addon, in a worker process. */
  worker?: WorkerSide<Options, Result>;
  run(context: RunContext<Options, Result>): Promise<Section>;
}

/** Runner → worker, as the worker's one argument (JSON). */
export interface WorkerRequest<Options> {
  scenario: string;
  options: Options;
}

/** Worker → runner, as one `BENCH_REPLY <json>` line on the worker's stdout. */
export type WorkerReply<Result> = { kind: "result"; result: Result } | { kind: "failed"; error: string };

export const REPLY_PREFIX = "BENCH_REPLY ";

/** The `scenario` that bench/scenarios/<name>.ts exports. */
export async function loadScenario(name: string): Promise<Scenario<unknown, unknown>> {
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`not a scenario name: ${name}`);
  const module: unknown = await import(`./scenarios/${name}.ts`);
  const scenario = (module as { scenario?: Scenario<unknown, unknown> }).scenario;
  if (typeof scenario?.run !== "function") throw new Error(`bench/scenarios/${name}.ts exports no \`scenario\``);
  return scenario;
}

export function log(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

/** Runs scenario `name`'s worker side in a fresh Node process (with `--expose-gc`, for the memory
 * figures) and resolves with its result. */
export async function runWorker<Options, Result>(name: string, options: Options): Promise<Result> {
  const request: WorkerRequest<Options> = { scenario: name, options };
  // A scenario that hangs must not hang the benchmark.
  const { stdout, code } = await runNode(["--expose-gc", join(ROOT, "bench", "worker.ts"), JSON.stringify(request)], {
    timeoutMs: 15 * 60_000,
  });
  const line = stdout.split("\n").find((l) => l.startsWith(REPLY_PREFIX));
  const reply = line ? (JSON.parse(line.slice(REPLY_PREFIX.length)) as WorkerReply<Result>) : undefined;
  if (reply?.kind === "failed") throw new Error(`bench worker ${name} failed: ${reply.error}`);
  if (reply === undefined || code !== 0) throw new Error(`bench worker ${name} exited with ${code}:\n${stdout}`);
  return reply.result;
}
