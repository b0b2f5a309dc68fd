// The offline demo: an interactive pi 1.x with the dispatch provider selected, pooling three
// simulated ChatGPT accounts, every byte passing through the native proxy to the simulated Codex
// backend on 127.0.0.1. Without a terminal (CI, tests) it runs the same story in print mode.
// Nothing touches your real ~/.pi: pi gets a throwaway HOME and agent dir, removed at the end.

import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline/promises";
import {
  EXTENSION,
  listModels,
  makeHome,
  type PiOptions,
  piVersion,
  runPi,
  Sim,
  type SimAccountScript,
  seedAccounts,
  spawnPiInTerminal,
} from "../__test__/harness.ts";

const HOUR = 3600;
const DAY = 24 * HOUR;

interface DemoAccount {
  label: string;
  about: string;
  script: SimAccountScript;
}

const reply = (label: string) => ({
  kind: "ok",
  text: `Hello from the simulated ChatGPT backend, answering as the "${label}" account.`,
  deltas: 8,
  delayMs: 40,
});

// The policy in three accounts: "fresh" is untouched, so it serves first (its windows only start
// when used); it runs out after one answer, and the request moves, unseen, to "almost-weekly",
// whose weekly window resets soonest: what it has left is lost first.
const ACCOUNTS: DemoAccount[] = [
  {
    label: "fresh",
    about: "untouched, so it serves first; answers once, then hits its usage limit",
    script: {
      accountId: "acct-fresh",
      email: "fresh@example.com",
      behaviors: [reply("fresh")],
      default: { kind: "usageLimit", resetsInSeconds: 2 * HOUR },
    },
  },
  {
    label: "almost-weekly",
    about: "weekly window 92% used, resets in 3 days: next in line, its quota is lost first",
    script: {
      accountId: "acct-almost-weekly",
      email: "almost-weekly@example.com",
      usage: {
        primary: { usedPercent: 10, windowMinutes: 300, resetAfterSeconds: 4 * HOUR },
        secondary: { usedPercent: 92, windowMinutes: 10080, resetAfterSeconds: 3 * DAY },
      },
      default: reply("almost-weekly"),
    },
  },
  {
    label: "steady",
    about: "weekly window 40% used, resets in 6 days",
    script: {
      accountId: "acct-steady",
      email: "steady@example.com",
      usage: {
        primary: { usedPercent: 25, windowMinutes: 300, resetAfterSeconds: 3 * HOUR },
        secondary: { usedPercent: 40, windowMinutes: 10080, resetAfterSeconds: 6 * DAY },
      },
      default: reply("steady"),
    },
  },
];

const home = makeHome();
const sim = await Sim.start(
  ACCOUNTS.map((account) => account.script),
  home.home,
);
let piInTerminal: ChildProcess | undefined;
// However the demo ends (done, Ctrl+C before pi opens, a closed terminal, a kill, a crash), pi,
// the sim and the throwaway home go with it.
process.on("exit", () => {
  piInTerminal?.kill();
  sim.stop();
  home.cleanup();
});
for (const signal of ["SIGINT", "SIGHUP", "SIGTERM"] as const) process.once(signal, () => process.exit(1));

seedAccounts(
  home.agentDir,
  ACCOUNTS.map(({ label, script }) => ({ label, accountId: script.accountId, tokens: sim.accounts[script.accountId] })),
);
const pi: PiOptions = {
  ...home,
  env: { PI_DISPATCH_BACKEND_URL: sim.backendBase, PI_DISPATCH_AUTH_URL: sim.issuer },
};
const [model] = await listModels("pi1", "dispatch", pi);
if (!model) throw new Error("pi lists no dispatch models: is the native addon built? (npm run build)");
console.log(
  [
    `pi-dispatch demo: pi ${piVersion("pi1")}, model dispatch/${model}, a simulated ChatGPT backend on ${sim.baseUrl}.`,
    `Throwaway home (your ~/.pi is not used): ${home.home}`,
    "",
    "Accounts in the pool:",
    ...ACCOUNTS.map(({ label, about }) => `  ${label.padEnd(14)} ${about}`),
    "",
  ].join("\n"),
);
const ok = process.stdin.isTTY && process.stdout.isTTY ? await interactive(model, pi) : await scripted(model, pi);
await printBackendLog(sim);
process.exit(ok ? 0 : 1);

async function interactive(model: string, options: PiOptions): Promise<boolean> {
  console.log(
    [
      "Try: /dispatch-status to see the pool, then send a couple of messages. The second one makes",
      '"fresh" hit its usage limit: watch the notice and which account answers. /quit leaves pi.',
      "",
    ].join("\n"),
  );
  // pi's full-screen UI hides everything above, so let the reader finish first.
  const prompt = createInterface({ input: process.stdin, output: process.stdout });
  const cancel = new AbortController();
  // Ctrl+C, or Ctrl+D / a closed terminal (which end the input), cancel the demo.
  prompt.once("SIGINT", () => cancel.abort());
  prompt.once("close", () => cancel.abort());
  const go = await prompt.question("Press Enter to open pi (Ctrl+C to stop here)... ", cancel).then(
    () => true,
    () => false,
  );
  prompt.close();
  if (!go) return true;
  const terminal: Record<string, string> = {};
  for (const name of ["TERM", "COLORTERM", "LANG", "LC_ALL"]) {
    const value = process.env[name];
    if (value) terminal[name] = value;
  }
  piInTerminal = spawnPiInTerminal("pi1", ["--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`], {
    ...options,
    env: { ...options.env, ...terminal },
  });
  const [code] = (await once(piInTerminal, "exit")) as [number | null];
  console.log(`\npi exited (${code}).`);
  return code === 0;
}

/** No terminal: the same story in print mode, each step's output shown. */
async function scripted(model: string, options: PiOptions): Promise<boolean> {
  const step = async (title: string, args: string[]) => {
    const run = await runPi("pi1", ["-p", "--no-session", "-e", EXTENSION, ...args], options);
    // Print mode moves extension output to stderr, so show both.
    const output = `${run.stdout}${run.stderr}`.trim();
    const shown = args.map((arg) => (arg.includes(" ") ? `"${arg}"` : arg)).join(" ");
    console.log(`$ pi -p ${shown}    # ${title}\n${output.replace(/^/gm, "  ")}\n  (exit ${run.code})\n`);
    return run;
  };
  await step("the pool", ["/dispatch-status"]);
  const first = await step("first prompt", ["--model", `dispatch/${model}`, "Say hello"]);
  await step('second prompt: "fresh" is out of quota now', ["--model", `dispatch/${model}`, "Say hello again"]);
  await step("the pool afterwards", ["/dispatch-status"]);
  return first.code === 0 && first.stdout.includes("Hello from the simulated ChatGPT backend");
}

async function printBackendLog(sim: Sim): Promise<void> {
  const requests = (await sim.stats()).requests.filter((r) => r.path?.endsWith("/codex/responses"));
  console.log("What the simulated backend served (each model request pi-dispatch forwarded):");
  if (requests.length === 0) console.log("  nothing");
  requests.forEach((r, index) => {
    console.log(
      `  ${index + 1}. ${r.accountId.padEnd(20)} ${(r.behavior?.kind ?? "refused").padEnd(12)} HTTP ${r.status}`,
    );
  });
}
