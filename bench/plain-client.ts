// A bare `fetch` of `/codex/responses`, with no pi in between: for figures where pi's client must
// not hold the reply or cannot send the body, and for the client process of
// bench/fixtures/external-client.ts. It loads nothing but Node.

import type { Endpoint } from "./client.ts";
import type { Timed } from "./lib.ts";

/** One streaming request for `accountId`, the way pi's client sends it (minus the prompt). */
export function postResponses(endpoint: Endpoint, accountId: string): Promise<Response> {
  return postBody(endpoint, accountId, JSON.stringify({ model: "gpt-5.1", stream: true, input: [] }));
}

/** One streaming request with this body; `headers` add to pi's (`session-id`, `content-encoding`). */
export function postBody(
  endpoint: Endpoint,
  accountId: string,
  body: string | Uint8Array<ArrayBuffer>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${endpoint.baseUrl}/codex/responses`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${endpoint.apiKey}`,
      "chatgpt-account-id": accountId,
      "content-type": "application/json",
      ...headers,
    },
    body,
  });
}

/** Reads the body to its end, dropping the bytes, and says how many there were. */
export async function drain(response: Response): Promise<number> {
  let received = 0;
  if (response.body) for await (const chunk of response.body) received += chunk.byteLength;
  return received;
}

const TEXT_DELTA = "event: response.output_text.delta";

/** Reads an SSE reply to its end and times it from `startMs` (a `performance.now()`): to the first
 * text delta's event line, and to the end. `error` is set unless the status was 200 and a text
 * delta came. */
export async function timeReply(response: Response, startMs: number): Promise<Timed & { error?: string }> {
  let first = 0;
  // The last bytes of the previous chunk: an event line may straddle two chunks.
  let tail = "";
  const decoder = new TextDecoder();
  if (response.body) {
    for await (const chunk of response.body) {
      if (first === 0) {
        const text = tail + decoder.decode(chunk, { stream: true });
        if (text.includes(TEXT_DELTA)) first = performance.now();
        tail = text.slice(-TEXT_DELTA.length);
      }
    }
  }
  const end = performance.now();
  const error =
    response.status !== 200 ? `status ${response.status}` : first === 0 ? "no text delta in the reply" : undefined;
  return { ttftMs: first === 0 ? Number.NaN : first - startMs, totalMs: end - startMs, error };
}
