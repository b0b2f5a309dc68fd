// pi's own Codex client: the stream function of pi-ai's openai-codex-responses provider (pi 0.73.1,
// a devDependency), given a model whose baseUrl is either the dispatch proxy or the simulator.
// bench/plain-client.ts is the other client: a bare `fetch`, without pi-ai.

import { getModels, type Message, type Model } from "@mariozechner/pi-ai";
import { streamSimpleOpenAICodexResponses } from "@mariozechner/pi-ai/openai-codex-responses";

/** Where the client sends its request, and the key it presents there. */
export interface Endpoint {
  baseUrl: string;
  apiKey: string;
}

export interface Timing {
  /** Request start to the first text delta pi's client emits, ms. */
  ttftMs: number;
  /** Request start to the end of the stream (`done` or `error`), ms. */
  totalMs: number;
  /** Characters of text received. */
  chars: number;
  /** pi's error message when the stream ended in an error. */
  error?: string;
}

const CODEX = getModels("openai-codex").find((model) => model.api === "openai-codex-responses");
if (!CODEX) throw new Error("pi-ai has no openai-codex-responses model");
const BASE_MODEL: Model<"openai-codex-responses"> = CODEX;

/** One earlier turn of a conversation as pi keeps it: the prompt, and the reply whose thinking block
 * holds the whole reasoning item (ciphertext included), which pi replays in `input` on every later
 * turn with the same model. */
export function pastTurn(prompt: string, reasoningItem: Record<string, unknown>, reply: string): Message[] {
  const noCost = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 };
  return [
    { role: "user", content: prompt, timestamp: Date.now() },
    {
      role: "assistant",
      content: [
        { type: "thinking", thinking: "", thinkingSignature: JSON.stringify(reasoningItem) },
        { type: "text", text: reply },
      ],
      api: BASE_MODEL.api,
      provider: BASE_MODEL.provider,
      model: BASE_MODEL.id,
      usage: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, totalTokens: 0, cost: noCost },
      stopReason: "stop",
      timestamp: Date.now(),
    },
  ];
}

/** One request through pi's client, after the turns of `history`. SSE only: pi tries a WebSocket
 * first and falls back to SSE for the rest of the session when refused (both the proxy and the sim
 * refuse); forcing SSE keeps that one-off fallback out of every figure, on both sides alike. */
export async function request(endpoint: Endpoint, sessionId: string, history: Message[] = []): Promise<Timing> {
  const model = { ...BASE_MODEL, baseUrl: endpoint.baseUrl };
  const start = performance.now();
  let first = 0;
  let chars = 0;
  let error: string | undefined;
  const stream = streamSimpleOpenAICodexResponses(
    model,
    {
      systemPrompt: "You are a benchmark.",
      messages: [...history, { role: "user", content: "hi", timestamp: Date.now() }],
    },
    { apiKey: endpoint.apiKey, transport: "sse", sessionId },
  );
  for await (const event of stream) {
    if (event.type === "text_delta") {
      if (first === 0) first = performance.now();
      chars += event.delta.length;
    } else if (event.type === "error") {
      error = event.error.errorMessage ?? "unknown error";
    }
  }
  const end = performance.now();
  return { ttftMs: first === 0 ? Number.NaN : first - start, totalMs: end - start, chars, error };
}

/** Like `request`, but fails unless the reply streamed text and ended well. */
export async function requestOk(endpoint: Endpoint, sessionId: string, history: Message[] = []): Promise<Timing> {
  const timing = await request(endpoint, sessionId, history);
  if (timing.error !== undefined || Number.isNaN(timing.ttftMs)) {
    throw new Error(`expected a streamed reply from ${endpoint.baseUrl}, got: ${timing.error ?? "no text"}`);
  }
  return timing;
}
