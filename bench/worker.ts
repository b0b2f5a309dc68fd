// One scenario's worker side in a process of its own, the way pi hosts the extension: the native
// addon (and so the proxy) lives in the same process as pi's Codex client. Started by
// `runWorker` (bench/scenario.ts) as `node bench/worker.ts <WorkerRequest as JSON>`; prints one
// `BENCH_REPLY <WorkerReply as JSON>` line.

import { createRequire } from "node:module";
import { join } from "node:path";
import type * as Native from "../binding.d.cts";
import { makeAgentDir, makeDir, ROOT, Sim } from "./lib.ts";
import { loadScenario, REPLY_PREFIX, type WorkerContext, type WorkerReply, type WorkerRequest } from "./scenario.ts";

function context(sim: Sim, agentDir: string): WorkerContext {
  let sessions = 0;
  return {
    sim,
    agentDir,
    async startProxy() {
      process.env.PI_DISPATCH_BACKEND_URL = sim.backendBase;
      process.env.PI_DISPATCH_AUTH_URL = sim.issuer;
      process.env.PI_CODING_AGENT_DIR = agentDir;
      const native = createRequire(import.meta.url)(join(ROOT, "binding.cjs")) as typeof Native;
      const info = await native.startProxy();
      if ("kind" in info) throw new Error(info.message);
      return { native, proxy: { baseUrl: info.baseUrl, apiKey: info.apiKey } };
    },
    direct: (accountId) => ({ baseUrl: sim.backendBase, apiKey: sim.startingTokens(accountId).access }),
    newSession() {
      sessions += 1;
      return `bench-${process.pid}-${sessions}`;
    },
  };
}

function reply(message: WorkerReply<unknown>): void {
  process.stdout.write(`${REPLY_PREFIX}${JSON.stringify(message)}\n`);
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? "{}") as WorkerRequest<unknown>;
  const worker = (await loadScenario(String(request.scenario))).worker;
  if (!worker) throw new Error(`scenario ${request.scenario} has no worker side`);
  const { dir, cleanup } = makeDir(request.scenario);
  const { accounts, ...more } = worker.sim(request.options);
  // The request log keeps whole bodies; most scenarios only read the counters.
  const sim = await Sim.start(accounts, dir, { requestLogLimit: 16, ...more });
  try {
    reply({ kind: "result", result: await worker.measure(context(sim, makeAgentDir(dir)), request.options) });
  } finally {
    sim.stop();
    await cleanup();
  }
}

try {
  await main();
} catch (error) {
  reply({ kind: "failed", error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exit(1);
}
// The proxy's listener keeps the event loop alive; this process is done.
process.exit(0);
