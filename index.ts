// pi-dispatch: the pi extension entry. Thin by design: the native core (Rust) owns accounts,
// tokens, HTTP and policy; this file maps pi's commands and provider onto it and renders results.

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { getModels } from "@mariozechner/pi-ai";
import type { ExtensionAPI, ExtensionCommandContext } from "@mariozechner/pi-coding-agent";
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
  pi.registerCommand("dispatch-status", {
    description: "Show the pooled ChatGPT accounts",
    handler: async (_args, ctx) => {
      try {
        show(ctx, formatStatus(native.listAccounts()), "info");
      } catch (error) {
        show(ctx, `pi-dispatch: ${describe(error)}`, "error");
      }
    },
  });
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

function formatStatus(pool: Native.PoolView): string {
  if (pool.accounts.length === 0) {
    return `pi-dispatch: no accounts yet (${pool.path}). Add one with /dispatch-login.`;
  }
  const rows = pool.accounts.map((account) => {
    const tags: string[] = [];
    if (account.state === "benched" && account.benchedUntilMs !== undefined) {
      tags.push(`benched until ${new Date(account.benchedUntilMs).toLocaleString()}`);
    }
    if (account.state === "needsLogin") tags.push("needs login");
    const plan = account.plan ? ` (${account.plan})` : "";
    return `  ${account.label}${plan}${tags.length > 0 ? `  [${tags.join(", ")}]` : ""}`;
  });
  return [`pi-dispatch: ${pool.accounts.length} account(s) in ${pool.path}`, ...rows].join("\n");
}

// ---- Accounts: /dispatch-login, /dispatch-remove, /dispatch-rename ----

const BROWSER_CHOICE = "Browser";
const DEVICE_CHOICE = "Device code";

function registerLoginCommands(pi: ExtensionAPI, native: typeof Native): void {
  pi.registerCommand("dispatch-login", {
    description: "Add a ChatGPT account to the pool, or log one in again: /dispatch-login [label] [--device]",
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix, ["--device"]),
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
    labels = native.listAccounts().accounts.map((account) => account.label);
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
    show(ctx, "pi-dispatch: usage: /dispatch-login [label] [--device]", "error");
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
  const labels = native.listAccounts().accounts.map((account) => account.label);
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
function show(ctx: ExtensionCommandContext, text: string, level: "info" | "warning" | "error"): void {
  if (ctx.hasUI) ctx.ui.notify(text, level);
  else console.log(text);
}

/** The native core prefixes its messages with `[kind]` for programs; users get the rest. */
function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/^\[[a-z_]+\] /, "");
}
