// Conversations whose reasoning only the minting account can read, through the real pi CLI of
// both generations: pi replays every earlier reasoning item, so a session that moves must lose
// the old account's ciphertext, and a session continued in a new pi process (`pi -c`) must go
// back to the account that served it. The simulator refuses foreign ciphertext with the real
// 400 and counts each refusal.

import assert from "node:assert/strict";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  dispatchModels,
  EXTENSION,
  GENERATIONS,
  makeHome,
  type RpcMessage,
  RpcPi,
  runPi,
  Sim,
  type SimRequest,
  seedAccounts,
} from "./harness.ts";

const WEEK_S = 7 * 24 * 3600;

interface Item {
  type?: string;
}

function reasoningIn(request: SimRequest): number {
  const input = (request.bodyJson as { input?: Item[] } | null)?.input ?? [];
  return input.filter((item) => item.type === "reasoning").length;
}

/** The assistant's text of the last turn in an RPC transcript. */
function replyText(messages: RpcMessage[]): string {
  const ended = messages.filter(
    (m) => m.type === "message_end" && (m.message as { role?: string } | undefined)?.role === "assistant",
  );
  const content = (ended.at(-1)?.message as { content?: { type: string; text?: string }[] } | undefined)?.content;
  return (content ?? [])
    .filter((part) => part.type === "text")
    .map((part) => part.text ?? "")
    .join("");
}

/** Two accounts; acct-a is untouched (so it is chosen first), acct-b touched. */
async function start() {
  const home = makeHome();
  const sim = await Sim.start([{ accountId: "acct-a" }, { accountId: "acct-b" }], home.home);
  const now = Date.now();
  const week = (used: number, resetInH: number) => ({
    observedAtMs: now,
    windows: [{ windowSeconds: WEEK_S, usedPercent: used, resetsAtMs: now + resetInH * 3_600_000 }],
  });
  seedAccounts(home.agentDir, [
    { label: "acct-a", accountId: "acct-a", tokens: sim.accounts["acct-a"], usage: week(0, 100) },
    { label: "acct-b", accountId: "acct-b", tokens: sim.accounts["acct-b"], usage: week(20, 50) },
  ]);
  const env = {
    PI_DISPATCH_BACKEND_URL: sim.backendBase,
    PI_DISPATCH_AUTH_URL: sim.issuer,
    PI_DISPATCH_SEED: "1",
  };
  return {
    sim,
    home,
    env,
    requests: async () => (await sim.stats()).requests,
    refused: async () => {
      const stats = await sim.stats();
      return Object.values(stats.accounts).reduce(
        (sum, counts) => sum + ((counts as { encryptedContentRefused?: number }).encryptedContentRefused ?? 0),
        0,
      );
    },
    stop: () => {
      sim.stop();
      home.cleanup();
    },
  };
}

for (const generation of GENERATIONS) {
  describe(`pi ${generation === "pi073" ? "0.73" : "1.x"}: conversations bound to their account`, () => {
    let model: string;
    const running: { stop: () => void }[] = [];
    const pool = async () => {
      const started = await start();
      running.push(started);
      return started;
    };

    /** One print-mode prompt in the directory's session (`-c` continues the latest one). */
    const ask = (target: Awaited<ReturnType<typeof start>>, prompt: string, continued: boolean) =>
      runPi(generation, ["-p", ...(continued ? ["-c"] : []), "-e", EXTENSION, "--model", `dispatch/${model}`, prompt], {
        ...target.home,
        env: target.env,
      });

    before(async () => {
      [model] = await dispatchModels(generation);
      assert.ok(model, "pi lists the dispatch models");
    });

    after(() => {
      for (const started of running) started.stop();
    });

    test("turn 2 in a new process, its account usage-limited: another answers, nothing refused", async () => {
      const target = await pool();
      const first = await ask(target, "Say hello", false);
      assert.match(first.stdout, /hello from acct-a/, first.stderr);
      await target.sim.setBehaviors("acct-a", [{ kind: "usageLimit", resetsInSeconds: 3600 }]);
      const second = await ask(target, "Again", true);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, /hello from acct-b/);
      const requests = await target.requests();
      const turn2 = requests.slice(1);
      assert.deepEqual(
        turn2.map((r) => r.accountId),
        ["acct-a", "acct-b"],
        "the session went back to acct-a first",
      );
      assert.ok(reasoningIn(turn2[0]) >= 1, "pi replayed turn 1's reasoning (else this proves nothing)");
      assert.equal(reasoningIn(turn2[1]), 0, "acct-b got no foreign ciphertext");
      assert.equal(await target.refused(), 0);
    });

    test("a session continued in a new process returns to its account though a fresh pick differs", async () => {
      const target = await pool();
      const first = await ask(target, "Say hello", false);
      assert.match(first.stdout, /hello from acct-a/, first.stderr);
      // Now acct-b is untouched and acct-a is not: a fresh choice would take acct-b.
      const path = join(target.home.agentDir, "dispatch.json");
      const file = JSON.parse(readFileSync(path, "utf8")) as {
        accounts: { label: string; usage?: { windows: { usedPercent: number }[] } }[];
        sessions?: unknown[];
      };
      assert.equal(file.sessions?.length, 1, "the binding is in the shared file");
      for (const account of file.accounts) {
        for (const window of account.usage?.windows ?? []) window.usedPercent = account.label === "acct-a" ? 30 : 0;
      }
      writeFileSync(`${path}.new`, JSON.stringify(file), { mode: 0o600 });
      renameSync(`${path}.new`, path);
      const fresh = await runPi(
        generation,
        ["-p", "--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`, "Who?"],
        { ...target.home, env: target.env },
      );
      assert.match(fresh.stdout, /hello from acct-b/, "a new session does take acct-b");
      const continued = await ask(target, "Again", true);
      assert.match(continued.stdout, /hello from acct-a/, continued.stderr);
      const last = (await target.requests()).at(-1);
      assert.equal(last?.accountId, "acct-a");
      assert.ok(last && reasoningIn(last) >= 1, "sent with its own reasoning");
      assert.equal(await target.refused(), 0);
    });

    test("/dispatch-use to another account mid-session over RPC, then a prompt: answered", async () => {
      const target = await pool();
      const pi = new RpcPi(generation, ["--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`], {
        ...target.home,
        env: target.env,
      });
      try {
        assert.match(replyText(await pi.prompt("Say hello")), /hello from acct-a/);
        await pi.command("/dispatch-use acct-b", () => ({ cancelled: true }));
        const answered = replyText(await pi.prompt("And now?"));
        assert.match(answered, /hello from acct-b/);
      } finally {
        await pi.stop();
      }
      const requests = await target.requests();
      assert.deepEqual(
        requests.map((r) => r.accountId),
        ["acct-a", "acct-b"],
      );
      assert.equal(reasoningIn(requests[1]), 0, "acct-a's reasoning was taken out");
      assert.equal(await target.refused(), 0);
    });
  });
}
