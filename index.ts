// pi-dispatch: the pi extension entry. Thin by design: the native core (Rust) owns accounts,
// tokens, HTTP and policy; this file maps pi's commands and provider onto it and renders results.

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
