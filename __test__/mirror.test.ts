// The dispatch provider's models are copies of pi's Codex catalog entries: every field pi uses to
// shape requests, minus what would change behaviour or point pi elsewhere.

import assert from "node:assert/strict";
import { test } from "node:test";
import { mirrorModel } from "../index.ts";

test("a mirrored model keeps request-shaping fields and drops promptCache, provider and baseUrl", () => {
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
  };
  const mirrored = mirrorModel(catalogEntry);
  const { provider, baseUrl, promptCache, ...kept } = catalogEntry;
  assert.deepEqual(mirrored, kept);
  assert.ok(provider && baseUrl && promptCache);
});
