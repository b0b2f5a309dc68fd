// pi-dispatch: the pi extension entry. Thin by design: the native core (Rust) owns accounts,
// tokens, HTTP and policy; this file maps pi's commands and provider onto it and renders results.

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
    getArgumentCompletions: async (prefix) => labelCompletions(native, prefix),
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
      ctx.ui.notify(formatNotice(notice, Date.now()), "warning");
    }
    updateFooter(ctx, native);
  });
  pi.on("turn_end", async (_event, ctx) => updateFooter(ctx, native));
}

/** The footer: the session's account and what is left of its 5-hour and weekly windows. */
function updateFooter(ctx: ExtensionContext, native: typeof Native): void {
  if (!ctx.hasUI) return;
  if (ctx.model?.provider !== PROVIDER) {
    ctx.ui.setStatus(PROVIDER, undefined);
    return;
  }
  native.status(ctx.sessionManager.getSessionId(), false).then(
    (pool) => {
      const active = pool.accounts.find((account) => account.active);
      ctx.ui.setStatus(PROVIDER, active ? `⇄ ${active.label} · ${leftText(active)}` : "⇄ no usable account");
    },
    () => {},
  );
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
    if (account.untouched) tags.push("untouched");
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

async function labelCompletions(
  native: typeof Native,
  prefix: string,
): Promise<{ value: string; label: string }[] | null> {
  try {
    const pool = await native.status(undefined, false);
    const items = pool.accounts
      .filter((account) => account.label.startsWith(prefix.trim()))
      .map((account) => ({ value: account.label, label: account.label }));
    return items.length > 0 ? items : null;
  } catch {
    return null;
  }
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
