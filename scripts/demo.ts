// The offline demo: a real pi answers through the dispatch provider, every byte passing through
// the native proxy, against the simulated Codex backend. Nothing touches your real ~/.pi.

import { EXTENSION, listModels, makeHome, runPi, Sim, seedAccounts } from "../__test__/harness.ts";

const home = makeHome();
const sim = await Sim.start(
  [
    {
      accountId: "acct-demo",
      email: "demo@example.com",
      default: { kind: "ok", text: "Hello from the pool! This reply streamed through pi-dispatch.", deltas: 8 },
    },
  ],
  home.home,
);
try {
  seedAccounts(home.agentDir, [{ label: "demo", accountId: "acct-demo", tokens: sim.accounts["acct-demo"] }]);
  const [model] = await listModels("pi1", "dispatch", home);
  console.log(`pi (1.x) with --model dispatch/${model}, HOME=${home.home}\n`);
  const run = await runPi("pi1", ["-p", "--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`, "Say hello"], {
    ...home,
    env: { PI_DISPATCH_BACKEND_URL: sim.backendBase, PI_DISPATCH_AUTH_URL: sim.issuer },
  });
  console.log(`pi answered (exit ${run.code}):\n  ${run.stdout.trim() || run.stderr.trim()}\n`);
  const stats = await sim.stats();
  for (const request of stats.requests.filter((r) => r.path?.endsWith("/codex/responses"))) {
    console.log(`the simulated backend served ${request.path} for account ${request.accountId}`);
  }
  process.exitCode = run.code ?? 1;
} finally {
  sim.stop();
  home.cleanup();
}
