// pi-dispatch: the pi extension entry. Thin by design: the native core (Rust) owns accounts,
// tokens, HTTP and policy; this file maps pi's commands and provider onto it and renders results.

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { getModels } from "@mariozechner/pi-ai";
import type { ExtensionAPI, ExtensionCommandContext, ExtensionContext } from "@mariozechner/pi-coding-agent";
import type * as Native from "./binding.d.cts";

const PROVIDER = "dispatch";
/** pi's built-in Codex catalog, mirrored under the `dispatch` provider. */
const SOURCE_PROVIDER = "openai-codex";
const CODEX_API = "openai-codex-responses";

export default async function piDispatch(pi: ExtensionAPI): Promise<void> {
  // A throw here would make pi exit, so every failure becomes an explanatory command instead.
  let native: typeof Native;
  try {
    native = createRequire(import.meta.url)("./binding.cjs");
  } catch (error) {
    registerBroken(pi, missingBinaryMessage(error));
    return;
  }
  try {
    const proxy = await native.startProxy();
    registerProvider(pi, proxy);
  } catch (error) {
    registerBroken(pi, `pi-dispatch could not start: ${describe(error)}`);
    return;
  }
  registerPoolCommands(pi, native);
  registerSessionUpkeep(pi, native);
  registerLoginCommands(pi, native);
}

/** The `dispatch` provider: pi's own Codex models and client, pointed at the native proxy. */
function registerProvider(pi: ExtensionAPI, proxy: Native.ProxyInfo): void {
  const models = getModels(SOURCE_PROVIDER as Parameters<typeof getModels>[0])
    .filter((model) => model.api === CODEX_API)
    .map((model) => mirrorModel(model as unknown as Record<string, unknown>));
  if (models.length === 0) return;
  pi.registerProvider(PROVIDER, {
    name: "pi-dispatch",
    baseUrl: proxy.baseUrl,
    // Only lets pi into its own proxy: real account tokens never leave the native core.
    apiKey: proxy.apiKey,
    api: CODEX_API,
    models: models as unknown as NonNullable<Parameters<ExtensionAPI["registerProvider"]>[1]["models"]>,
  });
}

/** Fields pi uses to shape requests. `promptCache` is left out on purpose: with it, pi 1.x sends
 * cache-warming requests that spend quota. */
const MIRRORED_FIELDS = [
  "id",
  "name",
  "api",
  "type",
  "reasoning",
  "thinkingLevelMap",
  "input",
  "inputLimits",
  "cost",
  "contextWindow",
  "maxTokens",
  "headers",
  "compat",
  "samplingParams",
] as const;

export function mirrorModel(model: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const field of MIRRORED_FIELDS) {
    if (model[field] !== undefined) copy[field] = model[field];
  }
  return copy;
}

/** `/dispatch-status` and `/dispatch-use`: the pool, and a per-session pin. */
function registerPoolCommands(pi: ExtensionAPI, native: typeof Native): void {
  pi.registerCommand("dispatch-status", {
    description: "Show every pooled account: usage windows, resets, and which serves this session",
    handler: async (_args, ctx) => {
      try {
        const sessionId = ctx.sessionManager.getSessionId();
        show(ctx, "pi-dispatch: refreshing usage…", "info");
        const pool = await native.status(sessionId, true);
        show(ctx, formatStatus(pool, Date.now()), "info");
        updateFooter(ctx, native);
      } catch (error) {
        show(ctx, `pi-dispatch: ${describe(error)}`, "error");
      }
    },
  });

  pi.registerCommand("dispatch-use", {
    description: "Pin an account for this session (until a rotation moves it off)",
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix),
    handler: async (args, ctx) => {
      try {
        const sessionId = ctx.sessionManager.getSessionId();
        let label = args.trim();
        if (label === "") {
          const pool = await native.status(sessionId, false);
          const ready = pool.accounts.filter((account) => account.state === "ready");
          if (!ctx.hasUI) {
            show(ctx, `Usage: /dispatch-use <label>. Ready: ${ready.map((a) => a.label).join(", ") || "none"}`, "info");
            return;
          }
          const options = ready.map((account) => `${account.label}  ${summarizeWindows(account, Date.now())}`);
          const picked = await ctx.ui.select("Pin which account for this session?", options);
          if (picked === undefined) return;
          label = ready[options.indexOf(picked)]?.label ?? "";
          if (label === "") return;
        }
        const account = await native.useAccount(sessionId, label);
        show(ctx, `pi-dispatch: this session now uses ${account.label} (pinned until a rotation moves it off)`, "info");
        updateFooter(ctx, native);
      } catch (error) {
        show(ctx, `pi-dispatch: ${describe(error)}`, "error");
      }
    },
  });
}

/** Usage is fetched in the background at start; the footer and rotation notices follow each reply. */
function registerSessionUpkeep(pi: ExtensionAPI, native: typeof Native): void {
  pi.on("session_start", async (_event, ctx) => {
    // Print and JSON mode (no UI) have no footer to show it in, and a pending fetch would keep a
    // one-shot `pi -p` from exiting until it answered; replies still bring usage in their headers.
    if (!ctx.hasUI) return;
    // Never awaited: nothing on pi's start-up path waits for the network.
    native.refreshUsage().then(
      () => updateFooter(ctx, native),
      () => {},
    );
    updateFooter(ctx, native);
  });
  pi.on("after_provider_response", async (_event, ctx) => {
    if (ctx.model?.provider !== PROVIDER) return;
    for (const notice of native.takeNotices(ctx.sessionManager.getSessionId())) {
      show(ctx, formatNotice(notice, Date.now()), "warning");
    }
    updateFooter(ctx, native);
  });
  pi.on("turn_end", async (_event, ctx) => updateFooter(ctx, native));
}

/** The footer: the session's account and what is left of its 5-hour and weekly windows. */
function updateFooter(ctx: ExtensionContext, native: typeof Native): void {
  unlessRetired(() => {
    if (!ctx.hasUI) return;
    if (ctx.model?.provider !== PROVIDER) {
      ctx.ui.setStatus(PROVIDER, undefined);
      return;
    }
    native.status(ctx.sessionManager.getSessionId(), false).then(
      (pool) =>
        unlessRetired(() => {
          const active = pool.accounts.find((account) => account.active);
          ctx.ui.setStatus(PROVIDER, active ? `⇄ ${active.label} · ${leftText(active)}` : "⇄ no usable account");
        }),
      () => {},
    );
  });
}

/** Footer updates run late (after a usage fetch or a status read), when pi may have retired the
 * ctx they hold: after a new, resumed or forked session, a reload, or the end of a print run, pi
 * throws on any use of it. Thrown from a promise callback, that would end pi; there is nothing
 * left to update, so it is dropped. */
function unlessRetired(update: () => void): void {
  try {
    update();
  } catch {
    // The ctx is stale.
  }
}

function leftText(account: Native.AccountView): string {
  const left = (window: Native.WindowView | undefined) =>
    window ? `${Math.max(0, Math.round(100 - window.usedPercent))}%` : "?";
  return `5h ${left(account.fiveHour)} left · week ${left(account.weekly)} left`;
}

export function formatNotice(notice: Native.NoticeView, now: number): string {
  const back = notice.backAtMs === undefined ? "" : ` (back ${when(notice.backAtMs, now)})`;
  const pin = notice.pinCleared ? "; your /dispatch-use pin is cleared" : "";
  return `pi-dispatch: ${notice.fromLabel}: ${notice.why}${back}; now using ${notice.toLabel}${pin}`;
}

const REASONS: Record<string, string> = {
  pinned: "pinned with /dispatch-use",
  kept: "this session already uses it (keeps the prompt cache warm)",
  untouched: "untouched: every window at 0%, so using it starts its clocks now",
  soonestWeeklyReset: "its weekly window resets soonest, so what it has left is lost first",
  any: "no account is untouched or has a known weekly reset; picked at random",
};

export function formatStatus(pool: Native.PoolView, now: number): string {
  if (pool.accounts.length === 0) {
    return `pi-dispatch: no accounts yet (${pool.path}). Add one with /dispatch-login.`;
  }
  const rows = pool.accounts.map((account) => {
    const tags: string[] = [];
    if (account.active) tags.push(account.pinned ? "active, pinned" : "active");
    if (account.state === "benched" || account.state === "spent") {
      tags.push(`${account.reason}, back ${account.backAtMs === undefined ? "later" : when(account.backAtMs, now)}`);
    }
    if (account.state === "needsLogin") tags.push(`needs login: /dispatch-login ${account.label}`);
    if (account.state === "disabled") tags.push(`unusable: ${account.reason}`);
    if (account.untouched && account.state === "ready") tags.push("untouched");
    const plan = account.plan ? ` (${account.plan})` : "";
    const windows = summarizeWindows(account, now);
    const stale = account.stale ? `  [stale: ${staleness(account, now)}]` : "";
    const marker = account.active ? "▸" : " ";
    return [
      `${marker} ${account.label}${plan}${tags.length > 0 ? `  [${tags.join("; ")}]` : ""}`,
      `    ${windows}${stale}`,
    ];
  });
  const lines = [`pi-dispatch: ${pool.accounts.length} account(s) in ${pool.path}`, ...rows.flat()];
  if (pool.active) {
    const reason =
      pool.active.reason === "soonestWeeklyReset" && pool.active.resetsAtMs !== undefined
        ? `${REASONS.soonestWeeklyReset} (${when(pool.active.resetsAtMs, now)})`
        : (REASONS[pool.active.reason] ?? pool.active.reason);
    const lead = pool.active.preview ? "Next request goes to" : "This session uses";
    lines.push(`${lead} ${pool.active.label}: ${reason}.`);
  } else {
    lines.push("No account can serve now.");
  }
  if (pool.writeError) lines.push(`Warning: could not save what was learned: ${pool.writeError}`);
  return lines.join("\n");
}

function summarizeWindows(account: Native.AccountView, now: number): string {
  const window = (name: string, w: Native.WindowView | undefined) => {
    if (!w) return `${name} —`;
    const reset = w.resetsAtMs === undefined ? "" : ` (resets ${when(w.resetsAtMs, now)})`;
    return `${name} ${Math.round(w.usedPercent)}% used${reset}`;
  };
  const parts = [window("5h", account.fiveHour), window("week", account.weekly)];
  for (const other of account.otherWindows) parts.push(window(other.name ?? "other", other));
  return parts.join(" · ");
}

function staleness(account: Native.AccountView, now: number): string {
  const age =
    account.usageObservedAtMs === undefined ? "never fetched" : `${countdown(now - account.usageObservedAtMs)} old`;
  return account.fetchError ? `${age}; ${account.fetchError}` : age;
}

/** "Tue 09:00, in 2h 14m" in local time. */
export function when(at: number, now: number): string {
  const date = new Date(at);
  const far = at - now > 6 * 24 * 3600 * 1000;
  const day = date.toLocaleDateString(
    "en-GB",
    far ? { weekday: "short", day: "numeric", month: "short" } : { weekday: "short" },
  );
  const time = date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  return `${day} ${time}, in ${countdown(at - now)}`;
}

export function countdown(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// ---- Accounts: /dispatch-login, /dispatch-remove, /dispatch-rename ----

const BROWSER_CHOICE = "Browser";
const DEVICE_CHOICE = "Device code";

function registerLoginCommands(pi: ExtensionAPI, native: typeof Native): void {
  pi.registerCommand("dispatch-login", {
    description: "Add a ChatGPT account to the pool, or log one in again: /dispatch-login [label] [--browser|--device]",
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix, ["--browser", "--device"]),
    handler: (args, ctx) => guarded(ctx, () => login(native, args, ctx)),
  });
  pi.registerCommand("dispatch-remove", {
    description: "Remove an account from the pool: /dispatch-remove [label]",
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix),
    handler: (args, ctx) => guarded(ctx, () => removeAccount(native, args, ctx)),
  });
  pi.registerCommand("dispatch-rename", {
    description: "Give an account another label: /dispatch-rename <label> <new label>",
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix),
    handler: (args, ctx) => guarded(ctx, () => renameAccount(native, args, ctx)),
  });
}

/** Runs a command, showing any failure; a cancelled login is news, not an error. */
async function guarded(ctx: ExtensionCommandContext, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    const cancelled = error instanceof Error && error.message.startsWith("[login_cancelled]");
    show(ctx, `pi-dispatch: ${describe(error)}`, cancelled ? "info" : "error");
  }
}

/** Labels (and extra words) that start with what was typed; only the first argument is a label. */
function labelCompletions(
  native: typeof Native,
  prefix: string,
  extra: string[] = [],
): { value: string; label: string }[] | null {
  if (/\s/.test(prefix)) return null;
  let labels: string[];
  try {
    labels = native.accountLabels();
  } catch {
    return null;
  }
  const items = [...labels, ...extra]
    .filter((value) => value.startsWith(prefix))
    .map((value) => ({ value, label: value }));
  return items.length > 0 ? items : null;
}

async function login(native: typeof Native, args: string, ctx: ExtensionCommandContext): Promise<void> {
  let method: "browser" | "device" | undefined;
  const rest: string[] = [];
  for (const word of words(args)) {
    if (word === "--device") method = "device";
    else if (word === "--browser") method = "browser";
    else rest.push(word);
  }
  if (rest.length > 1) {
    show(ctx, "pi-dispatch: usage: /dispatch-login [label] [--browser|--device]", "error");
    return;
  }
  if (method === undefined && ctx.hasUI) {
    const choice = await ctx.ui.select("Log in a ChatGPT account with", [BROWSER_CHOICE, DEVICE_CHOICE]);
    if (choice === undefined) {
      show(ctx, "pi-dispatch: login cancelled; nothing was changed.", "info");
      return;
    }
    method = choice === DEVICE_CHOICE ? "device" : "browser";
  }
  const label = rest[0];
  const result =
    method === "device"
      ? await deviceLogin(await native.startDeviceLogin(label), ctx)
      : await browserLogin(await native.startBrowserLogin(label), ctx);
  if (result) show(ctx, loginSummary(result), "info");
}

/** The browser sign-in: the callback and a pasted redirect race; the first answer decides. */
async function browserLogin(flow: Native.LoginFlow, ctx: ExtensionCommandContext): Promise<Native.LoginResult | null> {
  const opened = openBrowser(flow.url);
  const lines = [
    opened
      ? "pi-dispatch: sign in in the browser that just opened, or open this URL yourself:"
      : "pi-dispatch: open this URL to sign in:",
    flow.url,
  ];
  if (flow.notice) lines.push(`Note: ${flow.notice}.`);
  if (!ctx.hasUI) {
    if (flow.notice) {
      // Print mode cannot take a paste, so this login could only time out.
      flow.cancel();
      show(ctx, `pi-dispatch: ${flow.notice}, which print mode cannot take. Use /dispatch-login --device.`, "error");
      return null;
    }
    show(ctx, `${lines.join("\n")}\nWaiting for the browser (up to 10 minutes)...`, "info");
    return await flow.wait();
  }
  ctx.ui.notify(lines.join("\n"), "info");
  const done = flow.wait();
  const dismiss = new AbortController();
  void done.then(
    () => dismiss.abort(),
    () => dismiss.abort(),
  );
  void offerPaste(flow, ctx, dismiss.signal);
  return await done;
}

/** Asks for the redirect URL until one is taken, the user backs out (cancelling the login), or
 * the login ends by itself (which dismisses the dialog). */
async function offerPaste(flow: Native.LoginFlow, ctx: ExtensionCommandContext, signal: AbortSignal): Promise<void> {
  let title = "Paste the address the browser shows after signing in (Escape cancels the login)";
  while (!signal.aborted) {
    const text = await ctx.ui.input(title, "http://localhost:1455/auth/callback?code=...&state=...", { signal });
    if (signal.aborted) return;
    if (text === undefined) {
      flow.cancel();
      return;
    }
    try {
      flow.submitPaste(text);
      return;
    } catch (error) {
      title = `${describe(error)} (Escape cancels the login)`;
    }
  }
}

/** The device-code sign-in, for machines without a browser: the user enters a code elsewhere. */
async function deviceLogin(flow: Native.LoginFlow, ctx: ExtensionCommandContext): Promise<Native.LoginResult> {
  const text = `pi-dispatch: on any device, open ${flow.url} and enter the code ${flow.userCode}`;
  if (!ctx.hasUI) {
    show(ctx, `${text}\nWaiting for approval (up to 15 minutes)...`, "info");
    return await flow.wait();
  }
  ctx.ui.notify(text, "info");
  const done = flow.wait();
  const dismiss = new AbortController();
  void done.then(
    () => dismiss.abort(),
    () => dismiss.abort(),
  );
  // Keeps a way out on screen while polling: choosing it or backing out cancels.
  void ctx.ui
    .select(`Waiting for the code ${flow.userCode} at ${flow.url}`, ["Cancel login"], { signal: dismiss.signal })
    .then(() => {
      if (!dismiss.signal.aborted) flow.cancel();
    });
  return await done;
}

function loginSummary(result: Native.LoginResult): string {
  const details = [result.email, result.plan].filter(Boolean).join(", ");
  const head = result.added ? `pi-dispatch: added "${result.label}"` : `pi-dispatch: logged "${result.label}" in again`;
  let text = details ? `${head} (${details}).` : `${head}.`;
  if (result.ignoredLabel) {
    text += ` This account was already in the pool as "${result.label}" and keeps that label; /dispatch-rename ${result.label} ${result.ignoredLabel} changes it.`;
  }
  return text;
}

/** Opens the sign-in page with the platform's opener. The URL holds only the PKCE challenge and
 * the state, no secret. Returns false where no browser can open (no display on Linux). */
function openBrowser(url: string): boolean {
  let command: string;
  let args: string[];
  if (process.platform === "darwin") {
    command = "open";
    args = [url];
  } else if (process.platform === "win32") {
    // Not `start`: it runs through cmd.exe, which would cut the URL at its first `&`.
    command = "rundll32";
    args = ["url.dll,FileProtocolHandler", url];
  } else {
    if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return false;
    command = "xdg-open";
    args = [url];
  }
  try {
    const child = spawn(command, args, { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    child.unref();
    return true;
  } catch {
    return false;
  }
}

async function removeAccount(native: typeof Native, args: string, ctx: ExtensionCommandContext): Promise<void> {
  const given = words(args);
  if (given.length > 1) {
    show(ctx, "pi-dispatch: usage: /dispatch-remove [label]", "error");
    return;
  }
  const label = given[0] ?? (await chooseAccount(native, ctx, "Remove which account?", "/dispatch-remove <label>"));
  if (label === undefined) return;
  // Print mode has no dialogs; the label given on the command line is the confirmation there.
  if (ctx.hasUI) {
    const sure = await ctx.ui.confirm(
      `Remove "${label}"?`,
      "Its tokens are deleted from this machine. /dispatch-login adds it again.",
    );
    if (!sure) {
      show(ctx, "pi-dispatch: nothing was removed.", "info");
      return;
    }
  }
  native.removeAccount(label);
  show(ctx, `pi-dispatch: removed "${label}".`, "info");
}

async function renameAccount(native: typeof Native, args: string, ctx: ExtensionCommandContext): Promise<void> {
  const given = words(args);
  if (given.length > 2) {
    show(ctx, "pi-dispatch: usage: /dispatch-rename <label> <new label> (labels are one word)", "error");
    return;
  }
  const usage = "/dispatch-rename <label> <new label>";
  const label = given[0] ?? (await chooseAccount(native, ctx, "Rename which account?", usage));
  if (label === undefined) return;
  let newLabel: string | undefined = given[1];
  if (newLabel === undefined) {
    if (!ctx.hasUI) {
      show(ctx, `pi-dispatch: usage: ${usage}`, "error");
      return;
    }
    newLabel = (await ctx.ui.input(`New label for "${label}"`, label))?.trim();
    if (!newLabel) {
      show(ctx, "pi-dispatch: nothing was renamed.", "info");
      return;
    }
  }
  native.renameAccount(label, newLabel);
  show(ctx, `pi-dispatch: "${label}" is now "${newLabel}".`, "info");
}

/** A label picked from the pool in a dialog; without dialogs, says how to name one instead. */
async function chooseAccount(
  native: typeof Native,
  ctx: ExtensionCommandContext,
  title: string,
  usage: string,
): Promise<string | undefined> {
  const labels = native.accountLabels();
  if (labels.length === 0) {
    show(ctx, "pi-dispatch: no accounts yet. Add one with /dispatch-login.", "info");
    return undefined;
  }
  if (!ctx.hasUI) {
    show(ctx, `pi-dispatch: usage: ${usage} (accounts: ${labels.join(", ")})`, "error");
    return undefined;
  }
  return await ctx.ui.select(title, labels);
}

function words(args: string): string[] {
  return args.trim().split(/\s+/).filter(Boolean);
}

/** Registers the one command a broken install has, so pi still starts and the user learns why. */
function registerBroken(pi: ExtensionAPI, message: string): void {
  pi.registerCommand("dispatch-status", {
    description: "pi-dispatch is not working: shows why",
    handler: async (_args, ctx) => show(ctx, message, "error"),
  });
}

function missingBinaryMessage(error: unknown): string {
  const triple = platformTriple();
  return [
    `pi-dispatch: the native binary for this platform (${triple}) is missing or cannot load.`,
    `It comes in the package pi-dispatch-${triple}, installed with pi-dispatch as an optional dependency.`,
    "Reinstall with `pi install npm:pi-dispatch`, and make sure npm does not skip optional dependencies",
    "(no --omit=optional or --no-optional, and the same OS and CPU as the one pi runs on).",
    `Load error: ${describe(error)}`,
  ].join("\n");
}

/** The napi-rs platform name, e.g. `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
export function platformTriple(): string {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform === "win32") return `${base}-msvc`;
  if (process.platform !== "linux") return base;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return `${base}-${report?.header?.glibcVersionRuntime ? "gnu" : "musl"}`;
}

/** Shows text in a dialog-capable UI, or prints it where there is none (print and json mode). */
function show(
  ctx: ExtensionCommandContext | ExtensionContext,
  text: string,
  level: "info" | "warning" | "error",
): void {
  if (ctx.hasUI) ctx.ui.notify(text, level);
  else console.log(text);
}

/** The native core prefixes its messages with `[kind]` for programs; users get the rest. */
function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/^\[[a-z_]+\] /, "");
}
