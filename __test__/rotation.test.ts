// Usage, selection and rotation in the real pi of both generations: pi's own Codex client -> the
// native proxy -> the simulated backend. Which account answers is read from the simulator's
// request counts, never from what pi prints alone: every test asserts how many upstream requests
// each account got.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  assertNoSecretPrinted,
  dispatchModels,
  EXTENSION,
  GENERATIONS,
  makeHome,
  type RpcMessage,
  RpcPi,
  runPi,
  type SeedWindow,
  Sim,
  seedAccounts,
} from "./harness.ts";

const FIVE_HOURS_S = 5 * 3600;
const WEEK_S = 7 * 24 * 3600;

/** A usage window: percent used and seconds until it resets. */
interface Win {
  used: number;
  resetInS: number;
}

interface AccountSpec {
  /** The simulator's account id, also its label in the pool. */
  id: string;
  /** Left out: 0% with a full window ahead. `null`: the account has no such window. */
  fiveHour?: Win | null;
  weekly?: Win | null;
  /** Answers queued for its next model requests; then it answers "hello from <id>". */
  behaviors?: Record<string, unknown>[];
  /** Its stored state in dispatch.json (benched, needsLogin, ...). */
  state?: Record<string, unknown>;
  /** How its usage endpoints answer (sim/README.md `usageEndpoint`). */
  usageEndpoint?: Record<string, unknown>;
}

function windowsOf(spec: AccountSpec): { seconds: number; win: Win }[] {
  const full = (seconds: number, win: Win | null | undefined) =>
    win === null ? [] : [{ seconds, win: win ?? { used: 0, resetInS: seconds } }];
  return [...full(FIVE_HOURS_S, spec.fiveHour), ...full(WEEK_S, spec.weekly)];
}

/** The sim's `usage` script: the first window reported as primary, the second as secondary, as
 * the backend does (a weekly-only account reports its week as the primary window). */
function simUsage(spec: AccountSpec): Record<string, unknown> {
  const [primary, secondary] = windowsOf(spec).map(({ seconds, win }) => ({
    usedPercent: win.used,
    windowMinutes: seconds / 60,
    resetAfterSeconds: win.resetInS,
  }));
  return { primary: primary ?? null, secondary: secondary ?? null };
}

/** The same windows as the store keeps them (src/store.rs `Usage`). */
function storedWindows(spec: AccountSpec, now: number): SeedWindow[] {
  return windowsOf(spec).map(({ seconds, win }) => ({
    windowSeconds: seconds,
    usedPercent: win.used,
    resetsAtMs: now + win.resetInS * 1000,
  }));
}

/** A simulator and an isolated pi home with one pool of accounts. */
class Pool {
  readonly sim: Sim;
  readonly home: ReturnType<typeof makeHome>;
  readonly specs: AccountSpec[];

  constructor(sim: Sim, home: ReturnType<typeof makeHome>, specs: AccountSpec[]) {
    this.sim = sim;
    this.home = home;
    this.specs = specs;
  }

  static async start(specs: AccountSpec[], options: { seedUsage: boolean }): Promise<Pool> {
    const home = makeHome();
    const sim = await Sim.start(
      specs.map((spec) => ({
        accountId: spec.id,
        usage: simUsage(spec),
        behaviors: spec.behaviors,
        usageEndpoint: spec.usageEndpoint,
      })),
      home.home,
    );
    const pool = new Pool(sim, home, specs);
    pool.seed(options);
    return pool;
  }

  /** Writes dispatch.json. With `seedUsage`, each account's usage is stored as just observed, so
   * the choice does not depend on when pi's background usage fetch lands. */
  seed(options: { seedUsage: boolean }): void {
    const now = Date.now();
    seedAccounts(
      this.home.agentDir,
      this.specs.map((spec) => ({
        label: spec.id,
        accountId: spec.id,
        tokens: this.sim.accounts[spec.id],
        state: spec.state,
        usage: options.seedUsage ? { observedAtMs: now, windows: storedWindows(spec, now) } : undefined,
      })),
    );
  }

  env(seed = "1"): Record<string, string> {
    return {
      PI_DISPATCH_BACKEND_URL: this.sim.backendBase,
      PI_DISPATCH_AUTH_URL: this.sim.issuer,
      PI_DISPATCH_SEED: seed,
    };
  }

  /** Model requests per account so far. */
  async responses(): Promise<Record<string, number>> {
    const stats = await this.sim.stats();
    return Object.fromEntries(this.specs.map((spec) => [spec.id, stats.accounts[spec.id]?.responses ?? 0]));
  }

  stop(): void {
    this.sim.stop();
    this.home.cleanup();
  }
}

/** Notifications shown in an RPC transcript. */
function notices(messages: RpcMessage[]): string[] {
  return messages
    .filter((m) => m.type === "extension_ui_request" && m.method === "notify")
    .map((m) => String(m.message));
}

/** The footer texts set in an RPC transcript. */
function footers(messages: RpcMessage[]): string[] {
  return messages
    .filter((m) => m.type === "extension_ui_request" && m.method === "setStatus" && m.statusKey === "dispatch")
    .map((m) => String(m.statusText));
}

/** What the assistant said, or the error pi recorded for its turn. */
function reply(messages: RpcMessage[]): { text: string; error?: string } {
  const ended = messages.filter(
    (m) => m.type === "message_end" && (m.message as { role?: string } | undefined)?.role === "assistant",
  );
  const last = ended.at(-1)?.message as
    | { content?: { type: string; text?: string }[]; stopReason?: string; errorMessage?: string }
    | undefined;
  const text = (last?.content ?? [])
    .filter((part) => part.type === "text")
    .map((part) => part.text ?? "")
    .join("");
  return { text, error: last?.stopReason === "error" ? (last.errorMessage ?? "error") : undefined };
}

/** An account's row of /dispatch-status, and the detail lines under it. */
function statusRow(status: string, label: string): { row: string; details: string[] } {
  const lines = status.split("\n");
  const at = lines.findIndex((line) => line.slice(2).split(" ")[0] === label && /^[ ▸] /.test(line));
  assert.ok(at >= 0, `a row for ${label} in:\n${status}`);
  const details = [];
  for (const line of lines.slice(at + 1)) {
    if (!line.startsWith("    ")) break;
    details.push(line.trim());
  }
  return { row: lines[at], details };
}

/** A local time and countdown as the proxy and the status command print them. */
const WHEN = String.raw`\w{3}(?: \d{2} \w{3})? \d{2}:\d{2},? \(?in [0-9dhms ]+\)?`;

for (const generation of GENERATIONS) {
  describe(`pi ${generation === "pi073" ? "0.73" : "1.x"}: usage and rotation`, () => {
    let model: string;
    const pools: Pool[] = [];

    const pool = async (specs: AccountSpec[], options = { seedUsage: true }) => {
      const started = await Pool.start(specs, options);
      pools.push(started);
      return started;
    };

    /** One print-mode prompt in a new session; also how long pi took. */
    const ask = async (target: Pool, prompt: string, seed = "1", extra: string[] = []) => {
      const started = Date.now();
      const run = await runPi(
        generation,
        ["-p", "--no-session", ...extra, "-e", EXTENSION, "--model", `dispatch/${model}`, prompt],
        { ...target.home, env: target.env(seed) },
      );
      return { ...run, ms: Date.now() - started, exitedAtMs: Date.now() };
    };

    const rpc = (target: Pool) =>
      new RpcPi(generation, ["--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`], {
        ...target.home,
        env: target.env(),
      });

    before(async () => {
      [model] = await dispatchModels(generation);
      assert.ok(model, "pi lists the dispatch models");
    });

    after(() => {
      for (const started of pools) started.stop();
    });

    test("a healthy pool is served by its untouched account", async () => {
      // acct-b's weekly window resets soonest: it would win if untouched did not come first.
      const target = await pool([
        { id: "acct-a", fiveHour: { used: 35, resetInS: 9000 }, weekly: { used: 50, resetInS: 2 * 86400 } },
        { id: "acct-b", fiveHour: { used: 10, resetInS: 3000 }, weekly: { used: 5, resetInS: 86400 } },
        { id: "acct-c" }, // untouched: both windows at 0%
      ]);
      for (const seed of ["1", "2"]) {
        const run = await ask(target, "Say hello", seed);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /hello from acct-c/);
      }
      assert.deepEqual(await target.responses(), { "acct-a": 0, "acct-b": 0, "acct-c": 2 });
    });

    test("a usage-limited account hands the request on, is asked once, and never again", async () => {
      // acct-a's weekly window resets first, so the policy tries it first; it is out of quota.
      const target = await pool([
        {
          id: "acct-a",
          fiveHour: { used: 50, resetInS: 9000 },
          weekly: { used: 60, resetInS: 86400 },
          behaviors: [{ kind: "usageLimit", resetsInSeconds: 3600 }],
        },
        { id: "acct-b", fiveHour: { used: 40, resetInS: 9000 }, weekly: { used: 20, resetInS: 5 * 86400 } },
      ]);
      const pi = rpc(target);
      try {
        const from = pi.messages.length;
        const first = await pi.prompt("Say hello");
        assert.deepEqual(reply(first), { text: "hello from acct-b", error: undefined });
        const rotated = notices(first);
        assert.equal(rotated.length, 1, `one rotation notice: ${JSON.stringify(rotated)}`);
        assert.match(
          rotated[0],
          new RegExp(`^pi-dispatch: acct-a: usage limit reached \\(back ${WHEN}\\); now using acct-b$`),
        );
        // The footer follows the session to its new account (it is updated asynchronously).
        const footer = await pi.waitFor((m) => footers([m]).some((text) => text.startsWith("⇄ acct-b")), from, 5_000);
        assert.equal(footer.statusText, "⇄ acct-b · 5h 60% left · week 80% left");

        const second = await pi.prompt("Again");
        assert.deepEqual(reply(second), { text: "hello from acct-b", error: undefined });
        assert.deepEqual(notices(second), [], "the rotation is told once");
        assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 2 });

        const status = (await pi.command("/dispatch-status", () => ({ cancelled: true }))).join("\n");
        const benched = statusRow(status, "acct-a");
        assert.match(benched.row, /^ {2}acct-a +plus .* benched$/);
        assert.match(benched.details[0], new RegExp(`^usage limit, back ${WHEN}$`));
        assert.match(statusRow(status, "acct-b").row, /^▸ acct-b +plus .* active$/);
        assert.match(status, /\nThis session uses acct-b: /);
      } finally {
        await pi.stop();
      }

      // The proxy sent acct-b the very request acct-a refused.
      const requests = (await target.sim.stats()).requests;
      assert.deepEqual(
        requests.slice(0, 2).map((r) => r.accountId),
        ["acct-a", "acct-b"],
      );
      assert.deepEqual(requests[1].bodyJson, requests[0].bodyJson);

      // Another pi process learns the bench from the shared file.
      const later = await ask(target, "Hello again");
      assert.equal(later.code, 0, later.stderr);
      assert.match(later.stdout, /hello from acct-b/);
      assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 3 });
    });

    for (const style of ["error", "failed"]) {
      test(`a usage limit reported in the stream (${style} event) rotates before pi sees output`, async () => {
        const target = await pool([
          {
            id: "acct-a", // untouched, so tried first
            behaviors: [{ kind: "streamError", code: "usage_limit_reached", style, message: "You've hit your limit" }],
          },
          { id: "acct-b", fiveHour: { used: 20, resetInS: 9000 }, weekly: { used: 30, resetInS: 86400 } },
        ]);
        const run = await ask(target, "Say hello");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "hello from acct-b");
        assert.doesNotMatch(run.stdout + run.stderr, /hit your limit|usage_limit/);
        // Print mode shows the rotation notice too (on stderr, where pi puts extension output).
        assert.match(
          run.stderr,
          new RegExp(`pi-dispatch: acct-a: usage limit reached \\(back ${WHEN}\\); now using acct-b\n`),
        );
        assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 1 });

        const later = await ask(target, "Again");
        assert.match(later.stdout, /hello from acct-b/);
        assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 2 }, "acct-a stays benched");
      });
    }

    test("all accounts exhausted: pi shows the proxy's message at once and does not retry", async () => {
      const target = await pool([
        { id: "acct-a", behaviors: [{ kind: "usageLimit", resetsInSeconds: 3600 }] },
        { id: "acct-b", behaviors: [{ kind: "usageLimit", resetsInSeconds: 1800 }] },
        { id: "acct-c", behaviors: [{ kind: "usageLimit", resetsInSeconds: 7200 }] },
      ]);
      const run = await ask(target, "Say hello");
      // Each account was tried once. pi 0.73's client would sleep 1+2+4 s before giving up on an
      // error status, and either generation's session layer re-runs a turn whose error it deems
      // retryable after 2, 4 and 8 s (the re-runs reach no account: all are benched). pi exits
      // at once instead; the margin is for a loaded machine.
      assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 1, "acct-c": 1 });
      const lastUpstream = Math.max(...(await target.sim.stats()).requests.map((r) => r.receivedAtMs));
      assert.ok(
        run.exitedAtMs - lastUpstream < 5000,
        `pi exited ${run.exitedAtMs - lastUpstream} ms after the last try`,
      );
      assert.ok(run.ms < 30_000, `pi took ${run.ms} ms`);
      assert.equal(run.code, 1, `pi reports the failure: ${run.stdout}`);
      const message = run.stderr.trim();
      assert.match(message, /^pi-dispatch: none of your 3 accounts can answer now \(/);
      for (const id of ["acct-a", "acct-b", "acct-c"]) {
        assert.match(message, new RegExp(`${id}: usage limit reached, back ${WHEN}`));
      }
      assert.match(message, new RegExp(`First back: acct-b, ${WHEN}\\.$`));
      assert.match(message, /First back: acct-b, .*, in (29|30)m\.$/);

      // The same in json mode, where pi would announce a retry; the benched accounts are not asked.
      const json = await ask(target, "Say hello", "1", ["--mode", "json"]);
      const events = json.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as RpcMessage);
      assert.deepEqual(
        events.filter((e) => e.type.startsWith("auto_retry")),
        [],
        "pi does not re-run the turn",
      );
      const { error } = reply(events);
      assert.match(
        error ?? `no error in: ${json.stdout.slice(-3000)}\nstderr: ${json.stderr}`,
        /^pi-dispatch: none of your 3 accounts can answer now \(.*First back: acct-b, /,
      );
      assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 1, "acct-c": 1 });
    });

    test("a weekly-only pool is served by its untouched account every time, then by the soonest reset", async () => {
      const target = await pool(
        [
          { id: "acct-a", fiveHour: null, weekly: { used: 40, resetInS: 2 * 86400 } },
          { id: "acct-b", fiveHour: null }, // untouched
          { id: "acct-c", fiveHour: null, weekly: { used: 15, resetInS: 86400 } },
        ],
        // Learned from the usage endpoint, whose weekly-only payload has `secondary_window: null`.
        { seedUsage: false },
      );
      const status = await ask(target, "/dispatch-status");
      assert.equal(status.code, 0, status.stderr);
      const shown = status.stdout + status.stderr;
      assert.match(statusRow(shown, "acct-a").row, /^ {2}acct-a +plus +— +▰▰▱▱▱ +40% /);
      assert.match(statusRow(shown, "acct-b").row, /^▸ acct-b +plus +— +▱▱▱▱▱ +0% .* active, untouched$/);
      assert.match(shown, /\nNext request goes to acct-b: untouched/);
      for (const seed of ["1", "2", "3", "4"]) {
        const run = await ask(target, "Say hello", seed);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /hello from acct-b/, `seed ${seed}`);
      }
      assert.deepEqual(await target.responses(), { "acct-a": 0, "acct-b": 4, "acct-c": 0 });

      // Now acct-b has been used too: the weekly window that resets first decides.
      await target.sim.setUsage("acct-b", {
        primary: { usedPercent: 70, windowMinutes: 10080, resetAfterSeconds: 5 * 86400 },
        secondary: null,
      });
      target.seed({ seedUsage: false });
      const again = await ask(target, "/dispatch-status");
      assert.match(again.stdout + again.stderr, /\nNext request goes to acct-c: its weekly window resets soonest/);
      for (const seed of ["1", "2"]) {
        const run = await ask(target, "Say hello", seed);
        assert.match(run.stdout, /hello from acct-c/, `seed ${seed}`);
      }
      assert.deepEqual(await target.responses(), { "acct-a": 0, "acct-b": 4, "acct-c": 2 });
    });

    test("/dispatch-use over RPC pins an account; the next prompt is served by it", async () => {
      const target = await pool([
        { id: "acct-a" }, // untouched
        { id: "acct-b", fiveHour: { used: 30, resetInS: 9000 }, weekly: { used: 40, resetInS: 3 * 86400 } },
        { id: "acct-c", fiveHour: { used: 60, resetInS: 4000 }, weekly: { used: 80, resetInS: 4 * 86400 } },
      ]);
      const pi = rpc(target);
      try {
        const pinned = await pi.command("/dispatch-use acct-b", () => {
          throw new Error("a label needs no dialog");
        });
        assert.deepEqual(pinned, ["pi-dispatch: this session now uses acct-b (pinned until a rotation moves it off)"]);
        assert.equal(reply(await pi.prompt("Say hello")).text, "hello from acct-b");
        assert.deepEqual(await target.responses(), { "acct-a": 0, "acct-b": 1, "acct-c": 0 });

        let options: string[] = [];
        const picked = await pi.command("/dispatch-use", (dialog) => {
          assert.equal(dialog.method, "select");
          assert.equal(dialog.title, "Pin which account for this session?");
          options = dialog.options as string[];
          const choice = options.find((option) => option.startsWith("acct-c "));
          assert.ok(choice, `acct-c is offered: ${JSON.stringify(options)}`);
          return { value: choice };
        });
        assert.deepEqual(
          options.map((option) => option.split(" ")[0]),
          ["acct-a", "acct-b", "acct-c"],
        );
        assert.match(options[2], /^acct-c {2}5h 60% used \(resets .*\) · week 80% used/);
        assert.deepEqual(picked, ["pi-dispatch: this session now uses acct-c (pinned until a rotation moves it off)"]);
        assert.equal(reply(await pi.prompt("Again")).text, "hello from acct-c");
        assert.deepEqual(await target.responses(), { "acct-a": 0, "acct-b": 1, "acct-c": 1 });

        const status = (await pi.command("/dispatch-status", () => ({ cancelled: true }))).join("\n");
        assert.match(statusRow(status, "acct-c").row, /^▸ acct-c +plus .* pinned$/);
        assert.match(status, /\nThis session uses acct-c: pinned with \/dispatch-use\./);

        // A rotation moves the session off its pin, and says so.
        await target.sim.setBehaviors("acct-c", [{ kind: "usageLimit", resetsInSeconds: 600 }]);
        const moved = await pi.prompt("Once more");
        assert.equal(reply(moved).text, "hello from acct-a");
        assert.equal(notices(moved).length, 1, JSON.stringify(notices(moved)));
        assert.match(
          notices(moved)[0],
          new RegExp(
            `^pi-dispatch: acct-c: usage limit reached \\(back ${WHEN}\\); now using acct-a; your /dispatch-use pin is cleared$`,
          ),
        );
        assert.deepEqual(await target.responses(), { "acct-a": 1, "acct-b": 1, "acct-c": 2 });
      } finally {
        await pi.stop();
      }
    });

    test("/dispatch-status in print mode refreshes usage and shows every account", async () => {
      const now = Date.now();
      const target = await pool(
        [
          {
            id: "acct-a",
            fiveHour: { used: 100, resetInS: 5400 },
            weekly: { used: 70, resetInS: 3 * 86400 },
            state: { kind: "benched", untilMs: now + 5400_000, reason: "usage limit" },
          },
          { id: "acct-b", state: { kind: "needsLogin", reason: "refresh token expired" } },
          { id: "acct-c", fiveHour: { used: 42, resetInS: 7200 }, weekly: { used: 10, resetInS: 2 * 86400 } },
          { id: "acct-d" }, // untouched
        ],
        { seedUsage: false },
      );
      const run = await ask(target, "/dispatch-status");
      assert.equal(run.code, 0, run.stderr);
      const shown = (run.stdout + run.stderr).trim();
      const stats = await target.sim.stats();
      for (const id of ["acct-a", "acct-c", "acct-d"]) {
        assert.ok(stats.accounts[id].whamUsage > 0, `${id}'s usage was fetched`);
      }
      assert.equal(stats.accounts["acct-b"].whamUsage, 0, "an account that must log in is not asked");
      assert.deepEqual(await target.responses(), { "acct-a": 0, "acct-b": 0, "acct-c": 0, "acct-d": 0 });

      assert.match(shown, /^pi-dispatch: refreshing usage…\npi-dispatch: 4 account\(s\) in .*dispatch\.json\n/);
      const rows = shown.split("\n").filter((line) => /^[ ▸] acct-/.test(line));
      assert.deepEqual(
        rows.map((row) => row.slice(2).split(" ")[0]),
        ["acct-a", "acct-b", "acct-c", "acct-d"],
      );
      const spent = statusRow(shown, "acct-a");
      assert.match(spent.row, /^ {2}acct-a +plus +▰▰▰▰▰ 100% +▰▰▰▰▱ +70% +[0-9hm ]+ +benched$/);
      assert.match(spent.details[0], new RegExp(`^usage limit, back ${WHEN}$`));
      const loggedOut = statusRow(shown, "acct-b");
      assert.match(loggedOut.row, /^ {2}acct-b +plus +— +— +— +needs login, stale$/);
      assert.deepEqual(loggedOut.details, ["needs login: /dispatch-login acct-b", "stale: never fetched"]);
      assert.match(statusRow(shown, "acct-c").row, /^ {2}acct-c +plus +▰▰▱▱▱ +42% +▰▱▱▱▱ +10% +[0-9hm ]+$/);
      assert.match(statusRow(shown, "acct-d").row, /^▸ acct-d +plus +▱▱▱▱▱ +0% +▱▱▱▱▱ +0% .* active, untouched$/);
      assert.match(shown, /\nNext request goes to acct-d: untouched: every window at 0%/);
    });

    test("a usage fetch that ends after pi left its session does not take pi down", async () => {
      // The fetch pi starts with its first session is still under way when that session is
      // replaced; pi 1.x then refuses every use of the old session's ctx.
      const target = await pool([{ id: "acct-a", usageEndpoint: { delayMs: 1500 } }], { seedUsage: false });
      const pi = rpc(target);
      try {
        pi.send({ type: "new_session", id: "replace" });
        await pi.waitFor((m) => m.type === "response" && m.id === "replace");
        const stored = () =>
          (
            JSON.parse(readFileSync(join(target.home.agentDir, "dispatch.json"), "utf8")) as {
              accounts: { usage?: unknown }[];
            }
          ).accounts[0].usage;
        const deadline = Date.now() + 15_000;
        while (stored() === undefined && Date.now() < deadline) await new Promise((wake) => setTimeout(wake, 100));
        assert.ok(stored(), "the start-up usage fetch finished");
        await new Promise((wake) => setTimeout(wake, 500));
        assert.equal(reply(await pi.prompt("Still there?", 15_000)).text, "hello from acct-a");
      } finally {
        await pi.stop();
      }
    });

    test("no account token appears in anything pi printed", async () => {
      for (const started of pools) await assertNoSecretPrinted(started.sim);
    });
  });
}
