// The dispatch provider's models are copies of pi's Codex catalog entries: every field pi uses to
// shape requests, minus what would change behaviour or point pi elsewhere.

import assert from "node:assert/strict";
import { test } from "node:test";
import { mirrorModel } from "../index.ts";

test("a mirrored model keeps request-shaping fields, drops promptCache, provider and baseUrl, and names itself in a header", () => {
  const catalogEntry = {
    id: "gpt-test",
    name: "GPT Test",
    api: "openai-codex-responses",
    provider: "openai-codex",
    baseUrl: "https://chatgpt.com/backend-api",
    reasoning: true,
    thinkingLevelMap: { off: "none" },
    input: ["text", "image"],
    inputLimits: { image: { maxBytes: 1 } },
    cost: { input: 1, output: 2, cacheRead: 0, cacheWrite: 0 },
    contextWindow: 272000,
    maxTokens: 128000,
    compat: { supportsStore: false },
    promptCache: { retention: "24h" },
    type: "chat",
    headers: { "x-catalog": "kept" },
  };
  const mirrored = mirrorModel(catalogEntry);
  const { provider, baseUrl, promptCache, ...kept } = catalogEntry;
  assert.deepEqual(mirrored, { ...kept, headers: { "x-catalog": "kept", "x-pi-dispatch-model": "gpt-test" } });
  assert.ok(provider && baseUrl && promptCache);
});
