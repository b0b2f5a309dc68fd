// 6. Memory: peak RSS growth of a fresh process with the addon while one 50 MB reply streams.

import { join } from "node:path";
import { type Endpoint, requestOk } from "../client.ts";
import {
  accountIds,
  BIG_BYTES,
  procMemory,
  ROOT,
  resetPeakRss,
  runNode,
  type Summary,
  seedSimAccounts,
  sleep,
  summarize,
} from "../lib.ts";
import { drain, postResponses } from "../plain-client.ts";
import { fmt, mb, table } from "../report.ts";
import type { Scenario } from "../scenario.ts";

type Side = "direct" | "proxy";
/** pi's client (keeps the text); a `fetch` that drops the bytes; a client in another process. */
type Client = "pi" | "raw" | "external";

interface Options {
  side: Side;
  client: Client;
  bytes: number;
}

interface Result {
  /** VmHWM after the reply − VmRSS before it, bytes. */
  growth: number;
}

export const scenario: Scenario<Options, Result> = {
  worker: {
    sim: () => ({ accounts: [{ accountId: accountIds(1)[0] }] }),
    async measure({ sim, agentDir, startProxy, direct, newSession }, options) {
      const [id] = accountIds(1);
      seedSimAccounts(agentDir, sim, [id]);
      // The addon is loaded on both sides, so only the streaming itself differs.
      const { proxy } = await startProxy();
      const endpoint = options.side === "direct" ? direct(id) : proxy;
      // Warm both paths (connections, code) with a small reply first.
      await sim.setBehaviors(id, [], { kind: "ok", text: "warm", deltas: 2 });
      await requestOk(endpoint, newSession());
      await sim.setBehaviors(id, [], { kind: "big", bytes: options.bytes });
      (globalThis as { gc?: () => void }).gc?.();
      await sleep(50);
      const before = procMemory();
      resetPeakRss();
      if (options.client === "external") {
        // This process only hosts the proxy.
        await externalFetch(endpoint, id);
      } else if (options.client === "raw") {
        // The proxy alone: the bytes are read and dropped, so the client holds nothing.
        const response = await postResponses(endpoint, id);
        if (!response.ok || !response.body) throw new Error(`raw fetch failed: ${response.status}`);
        await drain(response);
      } else {
        await requestOk(endpoint, newSession());
      }
      return { growth: procMemory().hwm - before.rss };
    },
  },

  async run({ quick, log, inWorker }) {
    const runs = quick ? 2 : 7;
    log(`memory: ${runs} fresh processes per side and client`);
    const growth: Record<string, number[]> = {};
    const measure = async (client: Client, side: Side) => {
      const key = client === "external" ? client : `${client}-${side}`;
      growth[key] ??= [];
      growth[key].push((await inWorker({ side, client, bytes: BIG_BYTES })).growth);
    };
    for (let i = 0; i < runs; i++) {
      for (const client of ["pi", "raw"] as const) {
        const sides: Side[] = i % 2 === 0 ? ["direct", "proxy"] : ["proxy", "direct"];
        for (const side of sides) await measure(client, side);
      }
      await measure("external", "proxy");
    }
    const s = (key: string) => summarize(growth[key]);
    const mbFmt = (x: Summary) => fmt(x, "MB", mb);
    const piAdded = s("pi-proxy").median - s("pi-direct").median;
    const rawAdded = s("raw-proxy").median - s("raw-direct").median;
    const rows = [
      [
        "pi's client (keeps the 50 MB of text, as pi does)",
        mbFmt(s("pi-direct")),
        mbFmt(s("pi-proxy")),
        `${mb(piAdded)} MB`,
      ],
      ["`fetch`, bytes read and dropped", mbFmt(s("raw-direct")), mbFmt(s("raw-proxy")), `${mb(rawAdded)} MB`],
      ["the proxy alone (client in another process)", "—", mbFmt(s("external")), `${mb(s("external").median)} MB`],
    ];
    const targets = [
      {
        what: "memory, 50 MB reply: peak RSS added by streaming through the proxy (pi's client)",
        target: "< 20 MB",
        measured: `${mb(piAdded)} MB`,
        met: piAdded < 20 * 1024 * 1024,
      },
      {
        what: "memory, 50 MB reply: peak RSS growth of a process that only hosts the proxy",
        target: "< 20 MB",
        measured: `${mb(s("external").median)} MB`,
        met: s("external").median < 20 * 1024 * 1024,
      },
    ];
    const markdown = [
      "## 6. Memory",
      "",
      "Peak RSS growth (VmHWM after the reply − VmRSS before it, the mark reset just before; Linux /proc) of a",
      "fresh process with the addon loaded and the proxy started, while one 50 MB `big` reply streams, after a",
      "small warm-up reply on the same path. pi's client keeps the whole text (pi-ai builds the message from the",
      "deltas), so its own growth is large on both sides; what the proxy adds is the difference. The last row",
      "hosts the proxy in the measured process and streams from a client in another process, so nothing but the",
      "proxy is measured.",
      "",
      table(["client", "direct", "through proxy", "added by the proxy"], rows),
    ].join("\n");
    return { markdown, targets };
  },
};

/** Streams one reply through `endpoint` from a child Node process (bench/fixtures/external-client.ts)
 * that drops the bytes. */
async function externalFetch(endpoint: Endpoint, accountId: string): Promise<void> {
  const client = join(ROOT, "bench", "fixtures", "external-client.ts");
  const { stdout } = await runNode([client, endpoint.baseUrl, endpoint.apiKey, accountId]);
  if (!(Number(stdout.trim()) > 0)) throw new Error(`the external client failed: ${stdout}`);
}
