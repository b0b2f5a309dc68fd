// What a person sees in pi's interactive TUI, in a real terminal (tmux), on both pi generations:
// the footer with the session's account, a rotation's notice, the /dispatch-use select dialog
// driven with the keyboard, the /dispatch-login paste dialog, and /dispatch-status. Which account
// served is read from the simulator's counts as well as from the screen.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import {
  assertNoSecretIn,
  consent,
  dispatchModels,
  EXTENSION,
  GENERATIONS,
  makeHome,
  piCommand,
  piVersion,
  type SeedAccount,
  Sim,
  type SimAccountScript,
  seedAccounts,
} from "./harness.ts";
import { assertScreen, ScreenError, Terminal, withScreen } from "./terminal.ts";

const FIVE_HOURS_S = 5 * 3600;
const WEEK_S = 7 * 24 * 3600;

/** One account of a pool: its label is its simulator id. */
interface Account {
  id: string;
  /** Percent used of the 5-hour and the weekly window, and seconds until the weekly reset. */
  fiveHourUsed: number;
  weeklyUsed: number;
  weeklyResetS: number;
  behaviors?: Record<string, unknown>[];
  state?: SeedAccount["state"];
}

/** A local time and countdown as the extension prints them. */
const WHEN = String.raw`\w{3}(?: \d{2} \w{3})? \d{2}:\d{2}, in [0-9dhms ]+`;

function simScript(account: Account): SimAccountScript {
  return {
    accountId: account.id,
    usage: {
      primary: { usedPercent: account.fiveHourUsed, windowMinutes: FIVE_HOURS_S / 60, resetAfterSeconds: 9000 },
      secondary: {
        usedPercent: account.weeklyUsed,
        windowMinutes: WEEK_S / 60,
        resetAfterSeconds: account.weeklyResetS,
      },
    },
    behaviors: account.behaviors,
  };
}

/** The same usage as the store keeps it, seen just now, so the first choice does not depend on
 * when pi's background usage fetch lands. */
function seed(account: Account, sim: Sim, now: number): SeedAccount {
  return {
    label: account.id,
    accountId: account.id,
    tokens: sim.accounts[account.id],
    state: account.state,
    usage: {
      observedAtMs: now,
      windows: [
        { windowSeconds: FIVE_HOURS_S, usedPercent: account.fiveHourUsed, resetsAtMs: now + 9000_000 },
        { windowSeconds: WEEK_S, usedPercent: account.weeklyUsed, resetsAtMs: now + account.weeklyResetS * 1000 },
      ],
    },
  };
}

/** The bottom row of the screen: pi puts the extensions' statuses there. */
function footer(screen: string): string {
  return screen.split("\n").at(-1)?.trim() ?? "";
}

function assertFooter(screen: string, expected: string): void {
  if (footer(screen) !== expected) throw new ScreenError(`the footer is not "${expected}"`, screen);
}

/** What pi's editor holds: the rows between the last two rules across the screen. */
function editorText(screen: string): string {
  const rows = screen.split("\n");
  const rules = rows.flatMap((row, index) => (/^─{20,}$/.test(row) ? [index] : []));
  if (rules.length < 2) return "";
  return rows
    .slice(rules[rules.length - 2] + 1, rules[rules.length - 1])
    .map((row) => row.trim())
    .join("\n")
    .trim();
}

/** The sign-in URL the extension shows; pi wraps it over several rows, which are joined here. */
function signInUrl(screen: string): string {
  const rows = screen.split("\n").map((row) => row.trim());
  const first = rows.findIndex((row) => row.startsWith("http://127.0.0.1:"));
  if (first === -1) return "";
  let url = rows[first];
  // A wrapped URL goes on in rows of printable ASCII without spaces; a blank or a border ends it.
  for (const row of rows.slice(first + 1)) {
    if (!/^[\x21-\x7e]+$/.test(row)) break;
    url += row;
  }
  return url;
}

for (const generation of GENERATIONS) {
  describe(`pi ${piVersion(generation)}: the interactive TUI in a terminal`, () => {
    let model: string;

    before(async () => {
      [model] = await dispatchModels(generation);
      assert.ok(model, "pi lists the dispatch models");
    });

    /** What the running test started (its terminal last), undone when it ends. */
    let cleanups: (() => void)[] = [];
    /** The terminal of the running test, whose screen a failure shows. */
    let current: Terminal | undefined;
    const tuiTest = (name: string, body: () => Promise<void>) =>
      test(name, async () => {
        try {
          await body();
        } catch (error) {
          throw withScreen(error, current);
        } finally {
          for (const cleanup of cleanups.reverse()) cleanup();
          cleanups = [];
          current = undefined;
        }
      });

    /** A simulator, a home seeded with `accounts`, and the interactive pi in a 120 x 40 terminal. */
    const open = async (accounts: Account[], more: SimAccountScript[] = []) => {
      const home = makeHome();
      cleanups.push(home.cleanup);
      const sim = await Sim.start([...accounts.map(simScript), ...more], home.home);
      cleanups.push(() => sim.stop());
      const now = Date.now();
      if (accounts.length > 0) {
        seedAccounts(
          home.agentDir,
          accounts.map((account) => seed(account, sim, now)),
        );
      }
      const terminal = Terminal.open(
        piCommand(generation, ["--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`], {
          ...home,
          env: {
            PI_DISPATCH_BACKEND_URL: sim.backendBase,
            PI_DISPATCH_AUTH_URL: sim.issuer,
            // Any free port: clear of a real login on this machine.
            PI_DISPATCH_CALLBACK_PORT: "0",
            PI_DISPATCH_SEED: "1",
            TERM: "tmux-256color",
            LANG: "C.UTF-8",
          },
        }),
      );
      cleanups.push(() => terminal.close());
      current = terminal;
      return { home, sim, terminal };
    };

    /** Types `text` into pi's editor and, once it shows there, submits it. */
    const submit = async (terminal: Terminal, text: string) => {
      terminal.type(text);
      await terminal.waitUntil((screen) => editorText(screen) === text, `"${text}" typed into the editor`);
      terminal.press("Enter");
    };

    const responses = async (sim: Sim, ids: string[]) => {
      const stats = await sim.stats();
      return Object.fromEntries(ids.map((id) => [id, stats.accounts[id]?.responses ?? 0]));
    };

    tuiTest("the footer shows the account; a usage limit rotates with one notice and the footer follows", async () => {
      // acct-a's weekly window resets first, so it serves first; its first answer is a 429.
      const { sim, terminal } = await open([
        {
          id: "acct-a",
          fiveHourUsed: 10,
          weeklyUsed: 40,
          weeklyResetS: 86400,
          behaviors: [{ kind: "usageLimit", resetsInSeconds: 3600 }],
        },
        { id: "acct-b", fiveHourUsed: 40, weeklyUsed: 20, weeklyResetS: 5 * 86400 },
      ]);
      await terminal.waitUntil(
        (screen) => footer(screen) === "⇄ acct-a · 5h 90% left · week 60% left",
        "the footer with acct-a and what is left of its windows",
      );

      await submit(terminal, "Say hello");
      const rotated = await terminal.waitUntil(
        (screen) => /^ hello from acct-b$/m.test(screen) && footer(screen).startsWith("⇄ acct-b"),
        "the reply from acct-b and the footer moved to it",
      );
      assertFooter(rotated, "⇄ acct-b · 5h 60% left · week 80% left");
      const notice = new RegExp(
        `^ Warning: pi-dispatch: acct-a: usage limit reached \\(back ${WHEN}\\); now using acct-b$`,
      );
      assertScreen(rotated, new RegExp(notice.source, "m"), "the rotation notice");
      const notices = rotated.split("\n").filter((row) => row.includes("pi-dispatch:"));
      assert.equal(notices.length, 1, "one notice, the rotation's");
      assert.doesNotMatch(
        rotated,
        /\b429\b|usage_limit_reached|limit has been reached/,
        "pi never saw the refused attempt",
      );
      assert.deepEqual(await responses(sim, ["acct-a", "acct-b"]), { "acct-a": 1, "acct-b": 1 });
      await assertNoSecretIn(sim, terminal.screens, "the terminal");
    });

    tuiTest("/dispatch-use with no label: pick an account with the arrow keys; it serves the next prompt", async () => {
      const ids = ["acct-a", "acct-b", "acct-c"];
      const { sim, terminal } = await open([
        { id: "acct-a", fiveHourUsed: 10, weeklyUsed: 40, weeklyResetS: 86400 },
        { id: "acct-b", fiveHourUsed: 20, weeklyUsed: 30, weeklyResetS: 3 * 86400 },
        { id: "acct-c", fiveHourUsed: 30, weeklyUsed: 20, weeklyResetS: 5 * 86400 },
      ]);
      await terminal.waitUntil((screen) => footer(screen).startsWith("⇄ acct-a ·"), "the footer with acct-a");

      await submit(terminal, "/dispatch-use");
      // The cursor starts on the first ready account; each Down moves it one row.
      await terminal.waitFor(/Pin which account for this session\?\n+ → acct-a {2}5h 10% used/, "the select dialog");
      terminal.press("Down");
      await terminal.waitFor(/^ → acct-b {2}5h 20% used/m, "the cursor on acct-b");
      terminal.press("Down");
      await terminal.waitFor(/^ → acct-c {2}5h 30% used/m, "the cursor on acct-c");
      terminal.press("Enter");
      const pinned = await terminal.waitUntil(
        (screen) =>
          screen.includes("pi-dispatch: this session now uses acct-c (pinned until a rotation moves it off)") &&
          footer(screen).startsWith("⇄ acct-c"),
        "the pin notice and the footer on acct-c",
      );
      assertFooter(pinned, "⇄ acct-c · 5h 70% left · week 80% left");
      assert.doesNotMatch(pinned, /Pin which account/, "the dialog is closed");

      await submit(terminal, "Say hello");
      await terminal.waitFor(/^ hello from acct-c$/m, "the reply from acct-c");
      assert.deepEqual(await responses(sim, ids), { "acct-a": 0, "acct-b": 0, "acct-c": 1 });
    });

    tuiTest("/dispatch-login: choose Browser, paste the redirect URL; the account is added", async () => {
      const { home, sim, terminal } = await open(
        [],
        [{ accountId: "acct-login", email: "login@example.com", default: { kind: "ok", text: "wrong account" } }],
      );
      await sim.queueLogin("acct-login");
      await terminal.waitUntil((screen) => footer(screen) === "⇄ no usable account", "the footer of an empty pool");

      await submit(terminal, "/dispatch-login");
      await terminal.waitFor(/Log in a ChatGPT account with\n+ → Browser\n+ {3}Device code/, "the method dialog");
      terminal.press("Enter");
      const asked = await terminal.waitFor(
        "Paste the address the browser shows after signing in (Escape cancels the login)",
        "the paste dialog",
      );
      const url = signInUrl(asked);
      assert.match(url, /\/oauth\/authorize\?.*&state=[\w-]+/, "the whole sign-in URL is on screen");
      const redirect = await consent(url);
      terminal.paste(redirect);
      terminal.press("Enter");
      await terminal.waitFor(
        /^ pi-dispatch: added "login@example\.com" \(login@example\.com, plus\)\.$/m,
        "the account added",
      );

      const stored = JSON.parse(readFileSync(join(home.agentDir, "dispatch.json"), "utf8")) as {
        accounts: { label: string; chatgptAccountId: string; tokens: { accessToken: string } }[];
      };
      assert.deepEqual(
        stored.accounts.map((account) => [account.label, account.chatgptAccountId]),
        [["login@example.com", "acct-login"]],
      );
      const issued = (await sim.tokens())["acct-login"];
      assert.ok(stored.accounts[0].tokens.accessToken === issued.access, "the stored access token is the issued one");
      await assertNoSecretIn(sim, terminal.screens, "the terminal");
    });

    tuiTest("/dispatch-status shows a row per account, the session's marked, and why it was chosen", async () => {
      const now = Date.now();
      const { terminal } = await open([
        { id: "acct-a", fiveHourUsed: 10, weeklyUsed: 40, weeklyResetS: 86400 },
        {
          id: "acct-b",
          fiveHourUsed: 20,
          weeklyUsed: 30,
          weeklyResetS: 3 * 86400,
          state: { kind: "benched", untilMs: now + 5400_000, reason: "usage limit" },
        },
        { id: "acct-c", fiveHourUsed: 30, weeklyUsed: 20, weeklyResetS: 5 * 86400 },
      ]);
      await terminal.waitUntil((screen) => footer(screen).startsWith("⇄ acct-a ·"), "the footer with acct-a");
      await submit(terminal, "/dispatch-status");
      const shown = await terminal.waitFor(/^ Next request goes to acct-a: /m, "the status and its reason line");
      assertScreen(shown, /^ pi-dispatch: 3 account\(s\) in \S+dispatch\.json$/m, "the header");
      assertScreen(shown, /^ {3}account +plan +5h used +week used +resets +state$/m, "the column heads");
      assertScreen(shown, /^ ▸ acct-a +plus +▰▱▱▱▱ +10% +▰▰▱▱▱ +40% .* active$/m, "acct-a's row, the session's");
      assertScreen(shown, /^ {3}acct-b +plus +▰▱▱▱▱ +20% +▰▰▱▱▱ +30% +1h (29|30)m +benched$/m, "acct-b's row");
      assertScreen(shown, new RegExp(`^ {5}usage limit, back ${WHEN}$`, "m"), "why acct-b rests, and until when");
      assertScreen(shown, /^ {3}acct-c +plus +▰▰▱▱▱ +30% +▰▱▱▱▱ +20% /m, "acct-c's row");
      // The rows line up: every gauge starts in one column.
      const columns = shown
        .split("\n")
        .filter((line) => /^ [ ▸] acct-/.test(line))
        .map((line) => line.search(/[▰▱]/));
      assert.equal(new Set(columns).size, 1, `aligned: ${columns}\n${shown}`);
      // Drawn in the theme's colours: the gauges and the states carry colour codes.
      const coloured = terminal.screen(true);
      const benchedRow = coloured.split("\n").find((line) => line.includes("acct-b") && line.includes("benched"));
      // pi styles a notice as a whole; the report's own tones start a colour right at the gauge.
      const sgrThenBar = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m▰`);
      assert.match(benchedRow ?? "", sgrThenBar, `acct-b's gauge is coloured: ${JSON.stringify(benchedRow)}`);
    });
  });
}
