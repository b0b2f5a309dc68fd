// 7. Rewrite cost: what removing another account's reasoning adds to a request that moves to a new
// account, and that a request staying on its account pays nothing for it.

import { constants as zlib, zstdCompressSync } from "node:zlib";
import type { Message } from "@mariozechner/pi-ai";
import { pastTurn, requestOk } from "../client.ts";
import {
  comparePairs,
  interleaved,
  type Pair,
  type SeedBinding,
  type Sim,
  type SimStats,
  seedSimAccounts,
  sleep,
} from "../lib.ts";
import { postBody, timeReply } from "../plain-client.ts";
import { comparedCells, mb, ms, type Target, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

/** The account that served every session before; benched in the accounts file, so a session bound
 * to it moves without a failed attempt. */
const BOUND = "served-before";
/** The account that serves every request. */
const SERVING = "serving";
/** pi 1.x's zstd level for request bodies (see codex-backend.md). */
const ZSTD_LEVEL = 3;
const MIB = 1024 * 1024;

interface Options {
  /** Bodies by their uncompressed size, and the pairs measured for each body and encoding. */
  bodies: { bytes: number; pairs: number }[];
  reasoningItems: number;
  /** Pairs of each row of the unchanged-account comparison. */
  pairs: number;
}

type Encoding = "identity" | "zstd";

interface BodyRuns {
  /** Uncompressed; as sent (zstd or not); as the moved request left the proxy. */
  bytes: number;
  sentBytes: number;
  strippedBytes: number;
  encoding: Encoding;
  /** TTFT, each pair: `base` a request that stays on its account, `other` one that moves. The
   * staying one sends the same body with its own account's reasoning, or the body the moving one
   * sends upstream. */
  sameBody: Pair[];
  sameUpstream: Pair[];
}

/** One kind of request of the rewrite figures: the account its session is bound to, what it sends
 * the proxy, and what must reach the sim. */
interface Side {
  what: string;
  boundTo: string;
  sent: Buffer<ArrayBuffer>;
  encoding: string | null;
  arrives: { body: Buffer; encoding: string | null };
}

interface Result {
  bodies: BodyRuns[];
  /** pi's client, 200 deltas, each pair: `base` straight at the sim, `other` through the proxy. */
  newSessions: Pair[];
  staying: Pair[];
  historyBytes: number;
}

/** A prose-like filler, the same every run: words drawn from a small vocabulary by a fixed-seed
 * generator. zstd level 3 shrinks it about 4.7 times, as it does text and code. */
function prose(length: number, seed: number): string {
  const words = "the of proxy account session request body reply token stream read write file test error value item \
input output model turn cache state then when which build run line code change type field".split(" ");
  let x = (seed * 2654435761 + 1) >>> 0;
  let out = "";
  while (out.length < length) {
    // A 32-bit LCG, its high bits only: the low ones repeat in short cycles, which zstd would find.
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out += `${words[(x >>> 8) % words.length]} `;
  }
  return out.slice(0, length);
}

/** Mints, per reasoning item, the ciphertext that only `accountId` accepts. */
async function mint(sim: Sim, accountId: string, ids: string[]): Promise<string[]> {
  return Promise.all(
    ids.map(async (itemId) => {
      const response = await fetch(`${sim.baseUrl}/__sim/mint/${accountId}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ itemId }),
      });
      if (!response.ok) throw new Error(`minting ${itemId} for ${accountId}: ${response.status}`);
      return ((await response.json()) as { encryptedContent: string }).encryptedContent;
    }),
  );
}

const reasoningIds = (n: number) => Array.from({ length: n }, (_, i) => `rs_bench_${i}`);

/** A request body late in a long pi session: per earlier turn a prompt, a reasoning item (with
 * `ciphertexts[turn]`), a tool call and its output, and a reply; the tool outputs carry the bulk,
 * padded to make the whole `bytes` long. Field order as pi's. */
function conversationBody(ciphertexts: string[], bytes: number): Record<string, unknown> {
  const build = (pad: number) => ({
    model: "gpt-5.1",
    store: false,
    stream: true,
    instructions: "You are a benchmark.",
    input: ciphertexts.flatMap((encrypted_content, turn) => [
      { role: "user", content: [{ type: "input_text", text: prose(200, turn) }] },
      {
        type: "reasoning",
        id: `rs_bench_${turn}`,
        summary: [{ type: "summary_text", text: prose(300, turn + 1000) }],
        encrypted_content,
      },
      { type: "function_call", call_id: `call_${turn}`, name: "read", arguments: '{"path":"src/lib.rs"}' },
      { type: "function_call_output", call_id: `call_${turn}`, output: prose(pad, turn + 2000) },
      {
        type: "message",
        role: "assistant",
        content: [{ type: "output_text", text: prose(400, turn + 3000), annotations: [] }],
        status: "completed",
        id: `msg_${turn}`,
      },
    ]),
    text: { verbosity: "medium" },
    include: ["reasoning.encrypted_content"],
    tool_choice: "auto",
    parallel_tool_calls: true,
  });
  const skeleton = JSON.stringify(build(0)).length;
  return build(Math.max(0, Math.floor((bytes - skeleton) / ciphertexts.length)));
}

/** What a correct rewrite sends: the same JSON text without the reasoning items. The proxy copies
 * every other field and item as it came, so this is byte for byte what must reach the account. */
function withoutReasoning(body: Record<string, unknown>): Buffer<ArrayBuffer> {
  const input = (body.input as { type?: string }[]).filter((item) => item.type !== "reasoning");
  return Buffer.from(JSON.stringify({ ...body, input }));
}

function encode(json: Buffer<ArrayBuffer>, encoding: Encoding): Buffer<ArrayBuffer> {
  return encoding === "zstd"
    ? zstdCompressSync(json, { params: { [zlib.ZSTD_c_compressionLevel]: ZSTD_LEVEL } })
    : json;
}

/** Fails unless the sim's log holds exactly `expected`: requests that `SERVING` served, none refused
 * for foreign ciphertext, none sent to `BOUND`. */
function checkServed(stats: SimStats, what: string, expected: { body: Buffer; encoding: string | null }[]): void {
  const serving = stats.accounts[SERVING];
  const problems = [
    serving?.encryptedContentRefused ? `${serving.encryptedContentRefused} refused for foreign ciphertext` : "",
    stats.accounts[BOUND]?.responses ? `${stats.accounts[BOUND].responses} sent to ${BOUND}` : "",
    serving?.served === expected.length ? "" : `${serving?.served ?? 0} served, expected ${expected.length}`,
    stats.requests.length === expected.length ? "" : `${stats.requests.length} requests reached the sim`,
    ...stats.requests.slice(0, expected.length).map((r, i) => {
      const body = Buffer.from(r.rawBodyBase64, "base64");
      if (r.accountId !== SERVING) return `request ${i} went to ${r.accountId}`;
      if (r.contentEncoding !== expected[i]?.encoding) return `request ${i} came as ${r.contentEncoding ?? "identity"}`;
      return body.equals(expected[i].body) ? "" : `request ${i}'s body (${body.length} bytes) is not the expected one`;
    }),
  ].filter((p) => p !== "");
  if (problems.length > 0) throw new Error(`${what}: ${problems.join("; ")}`);
}

export const scenario: Scenario<Options, Result> = {
  worker: {
    sim: () => ({
      // Two bodies a pair at most; at 10 MB each the log is read after every request.
      requestLogLimit: 2,
      accounts: [BOUND, SERVING].map((accountId) => ({
        accountId,
        default: { kind: "ok", text: "0123456789".repeat(200), deltas: 200 },
      })),
    }),
    async measure({ sim, agentDir, startProxy, direct, newSession }, options) {
      const seed = (sessions: SeedBinding[]) =>
        seedSimAccounts(
          agentDir,
          sim,
          [BOUND, SERVING],
          (id) => (id === BOUND ? { state: { kind: "benched", untilMs: Date.now() + 3600_000, reason: "bench" } } : {}),
          sessions,
        );
      const ids = reasoningIds(options.reasoningItems);
      const [boundMinted, servingMinted] = await Promise.all([mint(sim, BOUND, ids), mint(sim, SERVING, ids)]);

      // Unchanged account, as section 1 measures: pi's client straight at the sim and through the
      // proxy. The staying session carries a history of the serving account's reasoning, as pi
      // replays it; the proxy must send it byte for byte (checked against the direct request).
      const staying = `${newSession()}-staying`;
      seed([{ session: staying, accountId: SERVING, servedAtMs: Date.now() }]);
      const { proxy } = await startProxy();
      const straight = direct(SERVING);
      const history: Message[] = ids.flatMap((id, turn) =>
        pastTurn(
          prose(200, turn),
          { type: "reasoning", id, summary: [], encrypted_content: servingMinted[turn] },
          prose(400, turn + 3000),
        ),
      );
      const newSessions = await interleaved(
        { pairs: options.pairs, warmup: 5 },
        () => requestOk(straight, newSession()),
        () => requestOk(proxy, newSession()),
      );
      let historyBytes = 0;
      const stays = await interleaved(
        {
          pairs: options.pairs,
          warmup: 5,
          before: () => sim.resetStats(),
          after: async () => {
            const stats = await sim.stats();
            const [first] = stats.requests;
            const sent = Buffer.from(first?.rawBodyBase64 ?? "", "base64");
            const reasoning = ((first?.bodyJson as { input?: { type?: string }[] })?.input ?? []).filter(
              (item) => item.type === "reasoning",
            );
            if (reasoning.length !== ids.length) {
              throw new Error(`pi's client sent ${reasoning.length} reasoning items, not ${ids.length}`);
            }
            historyBytes = sent.length;
            checkServed(stats, "a session staying on its account", [
              { body: sent, encoding: null },
              { body: sent, encoding: null },
            ]);
          },
        },
        () => requestOk(straight, staying, history),
        () => requestOk(proxy, staying, history),
      );

      // The rewrite. A moving request (a session bound to the benched account, its body carrying that
      // account's reasoning) against two staying ones (sessions bound to the serving account, sent
      // byte for byte): the same body with the serving account's reasoning, for what the move costs
      // the user, and the very body the move sends upstream, for the proxy's own work.
      const bodies: BodyRuns[] = [];
      for (const { bytes, pairs } of options.bodies) {
        const servingJson = Buffer.from(JSON.stringify(conversationBody(servingMinted, bytes)));
        const boundBody = conversationBody(boundMinted, bytes);
        const stripped = withoutReasoning(boundBody);
        const upstream = { body: stripped, encoding: null };
        for (const encoding of ["identity", "zstd"] as const) {
          const zstd = encoding === "zstd" ? "zstd" : null;
          const label = `a ${mb(bytes)} MB ${encoding} request`;
          const staysSent = encode(servingJson, encoding);
          const sides: Record<"stays" | "staysStripped" | "moves", Side> = {
            stays: {
              what: `${label} that stays`,
              boundTo: SERVING,
              sent: staysSent,
              encoding: zstd,
              arrives: { body: staysSent, encoding: zstd },
            },
            staysStripped: {
              what: `${label}'s stripped body, staying`,
              boundTo: SERVING,
              sent: stripped,
              encoding: null,
              arrives: upstream,
            },
            moves: {
              what: `${label} that moves`,
              boundTo: BOUND,
              sent: encode(Buffer.from(JSON.stringify(boundBody)), encoding),
              encoding: zstd,
              arrives: upstream,
            },
          };
          const sessions = new Map<Side, string>();
          const send = async (side: Side) => {
            await sim.resetStats();
            const headers: Record<string, string> = { "session-id": sessions.get(side) ?? "" };
            if (side.encoding) headers["content-encoding"] = side.encoding;
            const start = performance.now();
            const timing = await timeReply(await postBody(proxy, "pi-dispatch", side.sent, headers), start);
            if (timing.error) throw new Error(`${side.what}: ${timing.error}`);
            checkServed(await sim.stats(), side.what, [side.arrives]);
            // The binding a move records reaches the file in the background: not during the next run.
            await sleep(30);
            return timing;
          };
          const series = (base: Side, other: Side) =>
            interleaved(
              {
                pairs,
                warmup: 2,
                // Fresh sessions each pair, bound as the file says: a moving one moves once.
                before: async () => {
                  const servedAtMs = Date.now() - 60_000;
                  for (const side of [base, other]) sessions.set(side, newSession());
                  seed(
                    [base, other].map((side) => ({
                      session: sessions.get(side) ?? "",
                      accountId: side.boundTo,
                      servedAtMs,
                    })),
                  );
                  await sleep(20);
                },
              },
              () => send(base),
              () => send(other),
            );
          bodies.push({
            bytes: servingJson.length,
            sentBytes: sides.moves.sent.length,
            strippedBytes: stripped.length,
            encoding,
            sameBody: (await series(sides.stays, sides.moves)).ttft,
            sameUpstream: (await series(sides.staysStripped, sides.moves)).ttft,
          });
        }
      }
      return { bodies, newSessions: newSessions.ttft, staying: stays.ttft, historyBytes };
    },
  },

  async run({ quick, log, inWorker }) {
    const reasoningItems = 50;
    const pairs = quick ? 10 : 60;
    const bodies = [
      { bytes: MIB, pairs: quick ? 5 : 30 },
      { bytes: 10 * MIB, pairs: quick ? 3 : 15 },
    ];
    log(`rewrite: ${bodies.map((b) => `${mb(b.bytes)} MB × ${b.pairs}`).join(", ")} pairs each encoding`);
    const result = await inWorker({ bodies, reasoningItems, pairs });
    const targets: Target[] = [];
    const sameBodyRows: string[][] = [];
    const sameUpstreamRows: string[][] = [];
    for (const b of result.bodies) {
      const sameBody = comparePairs(b.sameBody);
      const sameUpstream = comparePairs(b.sameUpstream);
      const added = (c: typeof sameBody) => c.other.median - c.base.median;
      // Counted both ways, the larger decides.
      const worst = Math.max(added(sameBody), added(sameUpstream));
      if (b.bytes < 2 * MIB) {
        targets.push({
          what: `rewrite, ${mb(b.bytes)} MB body with ${reasoningItems} reasoning items, ${b.encoding}: TTFT added by moving the session (difference of medians, the larger of the two comparisons)`,
          target: "< 5 ms",
          measured: `${ms(worst)} ms (${ms(added(sameUpstream))} ms against the body it sends upstream, ${ms(added(sameBody))} ms against the same body)`,
          met: worst < 5,
        });
      }
      const body = [`${mb(b.bytes)} MB`, b.encoding];
      sameBodyRows.push([...body, `${mb(b.sentBytes)} MB`, `${mb(b.strippedBytes)} MB`, ...comparedCells(sameBody)]);
      sameUpstreamRows.push([...body, ...comparedCells(sameUpstream)]);
    }
    const plain = comparePairs(result.newSessions);
    const stays = comparePairs(result.staying);
    const plainAdded = plain.other.median - plain.base.median;
    const staysAdded = stays.other.median - stays.base.median;
    targets.push({
      what: `rewrite, unchanged account: TTFT the proxy adds to a session that stays on its account (200 deltas, ${reasoningItems} reasoning items of history)`,
      target: "< 1 ms, as section 1's 200-delta row",
      measured: `${ms(staysAdded)} ms (new sessions: ${ms(plainAdded)} ms)`,
      met: staysAdded < 1,
    });
    const markdown = [
      "## 7. Rewrite cost",
      "",
      "A request whose session another account served before must lose that account's reasoning (its",
      "ciphertext is refused elsewhere): the proxy decodes a zstd body, drops the `reasoning` items from",
      "`input`, copies everything else as it came, and sends the result uncompressed. A request that stays on",
      "its account goes byte for byte. Two sim accounts: the one that served every session before, benched in",
      "the seeded `dispatch.json` (so a session bound to it moves without a failed attempt), and the one that",
      "serves. Every answer is 200 deltas.",
      "",
      `A plain \`fetch\` (pi-ai 0.73 sends no zstd) through the proxy of a body of ${reasoningItems} earlier turns (prompt,`,
      `reasoning item, tool call, tool output carrying the bulk, reply), identity or zstd (level ${ZSTD_LEVEL}, as pi 1.x`,
      "sends; the filler shrinks about 4.7 times). Each pair seeds two fresh sessions. The moving one is bound",
      "to the benched account, and the body carries that account's reasoning. The staying one is bound to the",
      "serving account and sends either the same body with the serving account's reasoning or the body the",
      "move sends upstream. TTFT = request start to the first text-delta event line. Every request is checked",
      "at the sim: a staying one arrived as sent, a moving one as exactly the body without its reasoning items,",
      "uncompressed; no refusal, nothing sent to the benched account.",
      "",
      "Against the same body staying: what the move costs the user. The sim then reads another body (smaller;",
      "for zstd, uncompressed, so the sim's decoding moves into the proxy), which is in this figure:",
      "",
      table(
        [
          "body",
          "sent as",
          "sent",
          "sent upstream when moving",
          "TTFT, stays",
          "TTFT, moves",
          "added (median − median)",
          "per pair (moves − stays)",
        ],
        sameBodyRows,
      ),
      "",
      "Against a staying request whose body is the one the move sends upstream (identity): both reach the sim",
      "as the same bytes, so the difference is the proxy's decoding and rewriting (for zstd, less the larger",
      "upload of the staying identity body to the proxy):",
      "",
      table(
        [
          "body",
          "sent as (moving)",
          "TTFT, stays (the stripped body)",
          "TTFT, moves",
          "added (median − median)",
          "per pair (moves − stays)",
        ],
        sameUpstreamRows,
      ),
      "",
      "Unchanged account: pi's client, straight at the sim and through the proxy, interleaved as in section 1.",
      "Section 1's method (a new session each request), and one session bound to the serving account whose",
      `requests carry ${reasoningItems} earlier turns with that account's reasoning (${(result.historyBytes / 1024).toFixed(0)} KB bodies, as pi replays them;`,
      "checked to reach the sim byte for byte as the direct request did):",
      "",
      table(
        ["session", "direct", "through proxy", "added (median − median)", "per pair (proxy − direct)"],
        [
          ["new each request (section 1's method)", ...comparedCells(plain)],
          [`stays on its account, ${reasoningItems} reasoning items of history`, ...comparedCells(stays)],
        ],
      ),
      "",
      `The staying session's added TTFT is ${ms(staysAdded - plainAdded)} ms from section 1's method's in the same run.`,
    ].join("\n");
    return { markdown, targets };
  },
};
