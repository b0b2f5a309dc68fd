// A bare `fetch` of `/codex/responses`, with no pi in between: for figures where pi's client must
// not hold the reply, and for the client process of bench/fixtures/external-client.ts. It loads
// nothing but Node.

import type { Endpoint } from "./client.ts";

/** One streaming request for `accountId`, the way pi's client sends it (minus the prompt). */
export function postResponses(endpoint: Endpoint, accountId: string): Promise<Response> {
  return fetch(`${endpoint.baseUrl}/codex/responses`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${endpoint.apiKey}`,
      "chatgpt-account-id": accountId,
      "content-type": "application/json",
    },
    body: JSON.stringify({ model: "gpt-5.1", stream: true, input: [] }),
  });
}

/** Reads the body to its end, dropping the bytes, and says how many there were. */
export async function drain(response: Response): Promise<number> {
  let received = 0;
  if (response.body) for await (const chunk of response.body) received += chunk.byteLength;
  return received;
}
