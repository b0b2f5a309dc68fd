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
/** Names the model on each request, so the proxy knows its limit family (src/runtime/proxy/forward.rs). */
const MODEL_HEADER = "x-pi-dispatch-model";

/** What every command needs: the native core and the sentences it shows. */
interface Core {
  native: typeof Native;
  text: Native.UiText;
}

export default async function piDispatch(pi: ExtensionAPI): Promise<void> {
  // A throw here would make pi exit, so every failure becomes an explanatory command instead.
  let native: typeof Native;
  try {
    native = createRequire(import.meta.url)("./binding.cjs");
  } catch (error) {
    registerBroken(pi, BROKEN_DESCRIPTION, missingBinaryMessage(error));
    return;
  }
  const core: Core = { native, text: native.uiText() };
  const proxy = await native.startProxy();
  if (isProblem(proxy)) {
    registerBroken(pi, core.text.describeBroken, fill(core.text.cannotStart, { message: proxy.message }));
    return;
  }
  registerProvider(pi, proxy);
  registerPoolCommands(pi, core);
  registerSessionUpkeep(pi, core);
  registerLoginCommands(pi, core);
}

/** Whether the core answered with a problem instead of a result. */
function isProblem(value: unknown): value is Native.Problem {
  return typeof value === "object" && value !== null && "kind" in value && "message" in value;
}

/** Fills a template's `{name}` blanks. */
function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
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
  copy.headers = { ...(model.headers as Record<string, string> | undefined), [MODEL_HEADER]: String(model.id) };
  return copy;
}

/** `/dispatch-status` and `/dispatch-use`: the pool, and a per-session pin. */
function registerPoolCommands(pi: ExtensionAPI, core: Core): void {
  const { native, text } = core;
  pi.registerCommand("dispatch-status", {
    description: text.describeStatus,
    handler: async (_args, ctx) => {
      show(ctx, text.refreshingUsage, "info");
      const pool = await native.status(ctx.sessionManager.getSessionId(), true);
      if (isProblem(pool)) return failed(ctx, core, pool);
      show(ctx, coloured(ctx, pool), "info");
      updateFooter(ctx, native);
    },
  });

  pi.registerCommand("dispatch-use", {
    description: text.describeUse,
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix),
    handler: async (args, ctx) => {
      const sessionId = ctx.sessionManager.getSessionId();
      let label = args.trim();
      if (label === "") {
        const pool = await native.status(sessionId, false);
        if (isProblem(pool)) return failed(ctx, core, pool);
        const ready = pool.accounts.filter((account) => account.state === "ready");
        if (!ctx.hasUI) {
          show(ctx, fill(text.useUsage, { labels: ready.map((a) => a.label).join(", ") || "none" }), "info");
          return;
        }
        const options = ready.map((account) => `${account.label}  ${account.summary}`);
        const picked = await ctx.ui.select(text.useTitle, options);
        if (picked === undefined) return;
        label = ready[options.indexOf(picked)]?.label ?? "";
        if (label === "") return;
      }
      const pinned = await native.useAccount(sessionId, label);
      if (isProblem(pinned)) return failed(ctx, core, pinned);
      show(ctx, pinned.message, "info");
      updateFooter(ctx, native);
    },
  });

  pi.registerCommand("dispatch-settings", {
    description: text.describeSettings,
    getArgumentCompletions: (prefix) => {
      const items = ["spend on", "spend off"].filter((value) => value.startsWith(prefix));
      return items.length > 0 ? items.map((value) => ({ value, label: value })) : null;
    },
    handler: async (args, ctx) => {
      const given = words(args);
      let on: boolean | undefined;
      if (given.length === 2 && given[0] === "spend" && (given[1] === "on" || given[1] === "off")) {
        on = given[1] === "on";
      } else if (given.length > 0) {
        show(ctx, text.settingsUsage, "error");
        return;
      }
      if (on === undefined) {
        const current = await native.settings();
        if (isProblem(current)) return failed(ctx, core, current);
        show(ctx, current.report, "info");
        if (!ctx.hasUI) return;
        const choice = await ctx.ui.select(text.spendTitle, [text.spendOff, text.spendOn]);
        if (choice === undefined) return;
        on = choice === text.spendOn;
      }
      const set = await native.setSpendMoney(on);
      if (isProblem(set)) return failed(ctx, core, set);
      show(ctx, set, "info");
    },
  });
}

/** Usage is fetched in the background at start, in every mode, so the first request finds it
 * known (it joins the fetch); the footer and rotation notices follow each reply. */
function registerSessionUpkeep(pi: ExtensionAPI, core: Core): void {
  const { native } = core;
  pi.on("session_start", async (_event, ctx) => {
    // Never awaited: nothing on pi's start-up path waits for the network.
    if (!ctx.hasUI) {
      // No footer to update, and a pending promise would keep a one-shot `pi -p` from exiting.
      native.startUsageRefresh();
      return;
    }
    native.refreshUsage().then(
      () => updateFooter(ctx, native),
      () => {},
    );
    updateFooter(ctx, native);
  });
  pi.on("after_provider_response", async (_event, ctx) =>
    unlessRetired(() => {
      if (ctx.model?.provider !== PROVIDER) return;
      for (const notice of native.takeNotices(ctx.sessionManager.getSessionId())) {
        show(ctx, notice.message, "warning");
      }
      updateFooter(ctx, native);
    }),
  );
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
          if (!isProblem(pool)) ctx.ui.setStatus(PROVIDER, pool.footer);
        }),
      () => {},
    );
  });
}

/** The theme colour of each tone of the status report. */
const TONE_COLOURS: Record<
  Exclude<Native.Tone, "plain">,
  "accent" | "muted" | "dim" | "success" | "warning" | "error"
> = {
  accent: "accent",
  muted: "muted",
  dim: "dim",
  success: "success",
  warning: "warning",
  error: "error",
};

/** The status report in pi's theme colours in the interactive TUI; plain text anywhere else (print
 * and json mode print it, and an RPC client gets text, not escape codes). */
function coloured(ctx: ExtensionContext, pool: Native.PoolView): string {
  if (!ctx.hasUI || !process.stdout.isTTY) return pool.report;
  const theme = ctx.ui.theme;
  return pool.lines
    .map((line) =>
      line.map((span) => (span.tone === "plain" ? span.text : theme.fg(TONE_COLOURS[span.tone], span.text))).join(""),
    )
    .join("\n");
}

/** Footer updates and notices can run when pi has retired the ctx they hold: after a new,
 * resumed or forked session, a reload, a compaction, or the end of a print run, pi throws on any
 * use of it. Thrown from a promise callback that would end pi, and from a handler pi reports it
 * as an extension error; there is nothing left to update, so it is dropped. */
function unlessRetired(update: () => void): void {
  try {
    update();
  } catch {
    // The ctx is stale.
  }
}

// ---- Accounts: /dispatch-login, /dispatch-remove, /dispatch-rename ----

function registerLoginCommands(pi: ExtensionAPI, core: Core): void {
  const { native, text } = core;
  pi.registerCommand("dispatch-login", {
    description: text.describeLogin,
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix, ["--browser", "--device"]),
    handler: (args, ctx) => login(core, args, ctx),
  });
  pi.registerCommand("dispatch-remove", {
    description: text.describeRemove,
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix),
    handler: (args, ctx) => removeAccount(core, args, ctx),
  });
  pi.registerCommand("dispatch-rename", {
    description: text.describeRename,
    getArgumentCompletions: (prefix) => labelCompletions(native, prefix),
    handler: (args, ctx) => renameAccount(core, args, ctx),
  });
}

/** Shows a problem the core reported; a cancelled login is news, not an error. */
function failed(ctx: ExtensionCommandContext | ExtensionContext, core: Core, problem: Native.Problem): void {
  show(ctx, fill(core.text.failed, { message: problem.message }), problem.kind === "loginCancelled" ? "info" : "error");
}

/** Labels (and extra words) that start with what was typed; only the first argument is a label. */
function labelCompletions(
  native: typeof Native,
  prefix: string,
  extra: string[] = [],
): { value: string; label: string }[] | null {
  if (/\s/.test(prefix)) return null;
  const labels = native.accountLabels();
  if (isProblem(labels)) return null;
  const items = [...labels, ...extra]
    .filter((value) => value.startsWith(prefix))
    .map((value) => ({ value, label: value }));
  return items.length > 0 ? items : null;
}

async function login(core: Core, args: string, ctx: ExtensionCommandContext): Promise<void> {
  const { native, text } = core;
  let method: Native.LoginMethod | undefined;
  const rest: string[] = [];
  for (const word of words(args)) {
    if (word === "--device") method = "device";
    else if (word === "--browser") method = "browser";
    else rest.push(word);
  }
  if (rest.length > 1) {
    show(ctx, text.loginUsage, "error");
    return;
  }
  if (method === undefined && ctx.hasUI) {
    const choices = [text.loginMethodBrowser, text.loginMethodDevice];
    const choice = await ctx.ui.select(text.loginMethodTitle, choices);
    if (choice === undefined) {
      show(ctx, text.loginCancelled, "info");
      return;
    }
    method = choice === text.loginMethodDevice ? "device" : "browser";
  }
  const label = rest[0];
  const flow = method === "device" ? await native.startDeviceLogin(label) : await native.startBrowserLogin(label);
  if (isProblem(flow)) return failed(ctx, core, flow);
  const done = flow.method === "device" ? await deviceLogin(core, flow, ctx) : await browserLogin(core, flow, ctx);
  if (done === null) return;
  if (isProblem(done)) return failed(ctx, core, done);
  show(ctx, done.message, "info");
  updateFooter(ctx, native);
}

/** The browser sign-in: the callback and a pasted redirect race; the first answer decides. */
async function browserLogin(
  core: Core,
  flow: Native.LoginFlow,
  ctx: ExtensionCommandContext,
): Promise<Native.Done | Native.Problem | null> {
  const { text } = core;
  const opened = openBrowser(flow.url);
  const lines = [fill(opened ? text.browserOpened : text.browserOpenYourself, { url: flow.url })];
  if (flow.notice) lines.push(fill(text.browserNote, { notice: flow.notice }));
  if (!ctx.hasUI) {
    if (flow.notice) {
      // Print mode cannot take a paste, so this login could only time out.
      flow.cancel();
      show(ctx, fill(text.browserNoPaste, { notice: flow.notice }), "error");
      return null;
    }
    show(ctx, [...lines, text.browserWaiting].join("\n"), "info");
    return await flow.wait();
  }
  ctx.ui.notify(lines.join("\n"), "info");
  const done = flow.wait();
  const dismiss = new AbortController();
  void done.then(() => dismiss.abort());
  void offerPaste(core, flow, ctx, dismiss.signal);
  return await done;
}

/** Asks for the redirect URL until one is taken, the user backs out (cancelling the login), or
 * the login ends by itself (which dismisses the dialog). */
async function offerPaste(
  core: Core,
  flow: Native.LoginFlow,
  ctx: ExtensionCommandContext,
  signal: AbortSignal,
): Promise<void> {
  const { text } = core;
  let title = text.pasteTitle;
  while (!signal.aborted) {
    const pasted = await ctx.ui.input(title, text.pastePlaceholder, { signal });
    if (signal.aborted) return;
    if (pasted === undefined) {
      flow.cancel();
      return;
    }
    const problem = flow.submitPaste(pasted);
    if (problem === null) return;
    title = fill(text.pasteAgainTitle, { problem: problem.message });
  }
}

/** The device-code sign-in, for machines without a browser: the user enters a code elsewhere. */
async function deviceLogin(
  core: Core,
  flow: Native.LoginFlow,
  ctx: ExtensionCommandContext,
): Promise<Native.Done | Native.Problem> {
  const { text } = core;
  const code = { url: flow.url, code: flow.userCode ?? "" };
  const instructions = fill(text.deviceInstructions, code);
  if (!ctx.hasUI) {
    show(ctx, `${instructions}\n${text.deviceWaiting}`, "info");
    return await flow.wait();
  }
  ctx.ui.notify(instructions, "info");
  const done = flow.wait();
  const dismiss = new AbortController();
  void done.then(() => dismiss.abort());
  // Keeps a way out on screen while polling: choosing it or backing out cancels.
  void ctx.ui.select(fill(text.deviceWaitingTitle, code), [text.deviceCancel], { signal: dismiss.signal }).then(() => {
    if (!dismiss.signal.aborted) flow.cancel();
  });
  return await done;
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

async function removeAccount(core: Core, args: string, ctx: ExtensionCommandContext): Promise<void> {
  const { native, text } = core;
  const given = words(args);
  if (given.length > 1) {
    show(ctx, text.removeUsage, "error");
    return;
  }
  const label = given[0] ?? (await chooseAccount(core, ctx, text.removeTitle, text.removeUsageLine));
  if (label === undefined) return;
  // Print mode has no dialogs; the label given on the command line is the confirmation there.
  if (ctx.hasUI) {
    const sure = await ctx.ui.confirm(fill(text.removeQuestion, { label }), text.removeDetail);
    if (!sure) {
      show(ctx, text.removeKept, "info");
      return;
    }
  }
  const removed = native.removeAccount(label);
  if (isProblem(removed)) return failed(ctx, core, removed);
  show(ctx, removed, "info");
  updateFooter(ctx, native);
}

async function renameAccount(core: Core, args: string, ctx: ExtensionCommandContext): Promise<void> {
  const { native, text } = core;
  const given = words(args);
  if (given.length > 2) {
    show(ctx, text.renameUsage, "error");
    return;
  }
  const label = given[0] ?? (await chooseAccount(core, ctx, text.renameTitle, text.renameUsageLine));
  if (label === undefined) return;
  let newLabel: string | undefined = given[1];
  if (newLabel === undefined) {
    if (!ctx.hasUI) {
      show(ctx, text.renameUsage, "error");
      return;
    }
    newLabel = (await ctx.ui.input(fill(text.renameQuestion, { label }), label))?.trim();
    if (!newLabel) {
      show(ctx, text.renameKept, "info");
      return;
    }
  }
  const renamed = native.renameAccount(label, newLabel);
  if (isProblem(renamed)) return failed(ctx, core, renamed);
  show(ctx, renamed, "info");
  updateFooter(ctx, native);
}

/** A label picked from the pool in a dialog; without dialogs, says how to name one instead. */
async function chooseAccount(
  core: Core,
  ctx: ExtensionCommandContext,
  title: string,
  usage: string,
): Promise<string | undefined> {
  const { native, text } = core;
  const labels = native.accountLabels();
  if (isProblem(labels)) {
    failed(ctx, core, labels);
    return undefined;
  }
  if (labels.length === 0) {
    show(ctx, text.noAccounts, "info");
    return undefined;
  }
  if (!ctx.hasUI) {
    show(ctx, fill(text.chooseUsage, { usage, labels: labels.join(", ") }), "error");
    return undefined;
  }
  return await ctx.ui.select(title, labels);
}

function words(args: string): string[] {
  return args.trim().split(/\s+/).filter(Boolean);
}

/** Registers the one command a broken install has, so pi still starts and the user learns why. */
function registerBroken(pi: ExtensionAPI, description: string, message: string): void {
  pi.registerCommand("dispatch-status", {
    description,
    handler: async (_args, ctx) => show(ctx, message, "error"),
  });
}

// The only sentences not from the core: without its binary there is no core to ask.
const BROKEN_DESCRIPTION = "pi-dispatch is not working: shows why";

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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
