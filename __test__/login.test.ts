// Account commands in the real pi of both generations: /dispatch-login completed through the
// pasted-redirect path over RPC (the test plays the browser against the simulator), the new
// account answering a prompt, /dispatch-rename and /dispatch-remove with their dialogs, and print
// mode, which has no dialogs.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  assertNoSecretPrinted,
  consent,
  EXTENSION,
  GENERATIONS,
  listModels,
  makeHome,
  RpcPi,
  runPi,
  Sim,
} from "./harness.ts";

interface StoredAccount {
  label: string;
  chatgptAccountId: string;
  tokens: { accessToken: string; refreshToken: string };
  state: { kind: string };
}

function storedAccounts(agentDir: string): StoredAccount[] {
  return (JSON.parse(readFileSync(join(agentDir, "dispatch.json"), "utf8")) as { accounts: StoredAccount[] }).accounts;
}

for (const generation of GENERATIONS) {
  describe(`pi ${generation === "pi073" ? "0.73" : "1.x"}: account commands`, () => {
    let sim: Sim;
    let home: ReturnType<typeof makeHome>;
    let env: Record<string, string>;

    before(async () => {
      home = makeHome();
      sim = await Sim.start(
        [
          { accountId: "acct-device", default: { kind: "ok", text: "wrong account" } },
          {
            accountId: "acct-login",
            email: "login@example.com",
            default: { kind: "ok", text: "Hello from the new account", deltas: 3 },
          },
        ],
        home.home,
        // A device login is approved on its first poll, as acct-device.
        { device: { autoApproveAfterPolls: 1, accountId: "acct-device" } },
      );
      // Port 0: the callback listener takes any free port, clear of a real login on this machine.
      env = {
        PI_DISPATCH_BACKEND_URL: sim.backendBase,
        PI_DISPATCH_AUTH_URL: sim.issuer,
        PI_DISPATCH_CALLBACK_PORT: "0",
      };
    });

    after(() => {
      sim.stop();
      home.cleanup();
    });

    test("/dispatch-login through a pasted redirect adds the account, which then answers a prompt", async () => {
      const [model] = await listModels(generation, "dispatch", home);
      await sim.queueLogin("acct-login");
      const pi = new RpcPi(generation, ["--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`], {
        ...home,
        env,
      });
      try {
        let signInUrl = "";
        const dialogs: string[] = [];
        const notices = await pi.command("/dispatch-login work", async (dialog, shown) => {
          dialogs.push(String(dialog.method));
          if (dialog.method === "select") {
            assert.deepEqual(dialog.options, ["Browser", "Device code"]);
            return { value: "Browser" };
          }
          assert.equal(dialog.method, "input");
          signInUrl = shown.join("\n").match(/http:\/\/127\.0\.0\.1:\d+\/oauth\/authorize\S+/)?.[0] ?? "";
          assert.ok(signInUrl, `the sign-in URL is shown: ${shown.join("\n")}`);
          return { value: await consent(signInUrl) };
        });
        assert.deepEqual(dialogs, ["select", "input"]);
        assert.match(notices.join("\n"), /added "work" \(login@example\.com, plus\)/);
        const params = new URL(signInUrl).searchParams;
        assert.equal(params.get("code_challenge_method"), "S256");
        assert.match(params.get("redirect_uri") ?? "", /^http:\/\/localhost:\d+\/auth\/callback$/);

        const issued = (await sim.tokens())["acct-login"];
        const [account] = storedAccounts(home.agentDir);
        assert.equal(account.label, "work");
        assert.equal(account.chatgptAccountId, "acct-login");
        assert.equal(account.tokens.accessToken, issued.access);
        assert.equal(account.tokens.refreshToken, issued.refresh);

        const events = await pi.prompt("Say hello");
        assert.match(JSON.stringify(events), /Hello from the new account/);
        const served = (await sim.stats()).requests.filter((r) => r.path?.endsWith("/codex/responses"));
        assert.equal(served.length, 1);
        assert.equal(served[0].accountId, "acct-login");
        assert.equal(served[0].headers.authorization, `Bearer ${issued.access}`);
      } finally {
        await pi.stop();
      }
    });

    test("/dispatch-rename and /dispatch-remove pick the account and confirm in dialogs", async () => {
      const labels = () => storedAccounts(home.agentDir).map((account) => account.label);
      assert.deepEqual(labels(), ["work"], "the login test left one account");
      const pi = new RpcPi(generation, ["--no-session", "-e", EXTENSION], { ...home, env });
      try {
        const renamed = await pi.command("/dispatch-rename", (dialog) => {
          if (dialog.method === "select") {
            assert.deepEqual(dialog.options, ["work"]);
            return { value: "work" };
          }
          assert.equal(dialog.method, "input");
          return { value: "personal" };
        });
        assert.match(renamed.join("\n"), /"work" is now "personal"/);
        assert.deepEqual(labels(), ["personal"]);

        const refused = await pi.command("/dispatch-rename personal two words", () => ({ cancelled: true }));
        assert.match(refused.join("\n"), /usage/);

        const kept = await pi.command("/dispatch-remove personal", (dialog) => {
          assert.equal(dialog.method, "confirm");
          return { confirmed: false };
        });
        assert.match(kept.join("\n"), /nothing was removed/);
        assert.deepEqual(labels(), ["personal"]);

        const dialogs: string[] = [];
        const removed = await pi.command("/dispatch-remove", (dialog) => {
          dialogs.push(String(dialog.method));
          return dialog.method === "select" ? { value: "personal" } : { confirmed: true };
        });
        assert.deepEqual(dialogs, ["select", "confirm"]);
        assert.match(removed.join("\n"), /removed "personal"/);
        assert.deepEqual(labels(), []);
      } finally {
        await pi.stop();
      }
    });

    test("print mode: /dispatch-login --device prints the code and completes once approved", async () => {
      const run = await runPi(generation, ["-p", "--no-session", "-e", EXTENSION, "/dispatch-login --device"], {
        ...home,
        env,
      });
      assert.equal(run.code, 0, run.stderr);
      const output = run.stdout + run.stderr;
      assert.match(output, new RegExp(`open ${sim.issuer}/codex/device and enter the code [A-Z]{4}-\\d{4}`));
      assert.match(output, /added "acct-device@example\.com"/);
      const [account] = storedAccounts(home.agentDir);
      assert.equal(account.chatgptAccountId, "acct-device");
      assert.equal(account.tokens.accessToken, (await sim.tokens())["acct-device"].access);
    });

    test("print mode: with the callback port taken, the browser login stops at once and says why", async () => {
      const busy = createServer();
      await new Promise<void>((listening) => busy.listen(0, "127.0.0.1", listening));
      const port = (busy.address() as { port: number }).port;
      try {
        const started = Date.now();
        const run = await runPi(generation, ["-p", "--no-session", "-e", EXTENSION, "/dispatch-login --browser"], {
          ...home,
          env: { ...env, PI_DISPATCH_CALLBACK_PORT: String(port) },
        });
        const output = run.stdout + run.stderr;
        assert.match(output, new RegExp(`port ${port} is in use; paste the redirect URL`));
        assert.match(output, /Use \/dispatch-login --device/);
        assert.ok(Date.now() - started < 30_000, "no waiting for a paste that cannot come");
      } finally {
        busy.close();
      }
    });

    test("no token or authorization code appears in anything pi printed", async () => {
      await assertNoSecretPrinted(sim);
    });
  });
}
