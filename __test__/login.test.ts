// Account commands in the real pi of both generations: /dispatch-login completed through the
// pasted-redirect path over RPC (the test plays the browser against the simulator), the new
// account answering a prompt, /dispatch-rename and /dispatch-remove with their dialogs, and print
// mode, which has no dialogs. There, a browser login is completed through the callback by a fake
// xdg-open that plays the browser and records its argv and environment for the secret check.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  assertNoSecretIn,
  assertNoSecretPrinted,
  consent,
  EXTENSION,
  GENERATIONS,
  installFakeOpener,
  knownSecrets,
  listModels,
  makeHome,
  RpcPi,
  runPi,
  Sim,
  seedAccounts,
  seenCodes,
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
          {
            accountId: "acct-browser",
            email: "browser@example.com",
            default: { kind: "ok", text: "Hello through the browser callback", deltas: 3 },
          },
          { accountId: "acct-kept", default: { kind: "ok", text: "wrong account" } },
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
        assert.ok(account.tokens.accessToken === issued.access, "the stored access token is the issued one");
        assert.ok(account.tokens.refreshToken === issued.refresh, "the stored refresh token is the issued one");

        const events = await pi.prompt("Say hello");
        assert.match(JSON.stringify(events), /Hello from the new account/);
        const served = (await sim.stats()).requests.filter((r) => r.path?.endsWith("/codex/responses"));
        assert.equal(served.length, 1);
        assert.equal(served[0].accountId, "acct-login");
        assert.ok(
          served[0].headers.authorization === `Bearer ${issued.access}`,
          "the prompt went out with the issued token",
        );
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
      assert.ok(
        account.tokens.accessToken === (await sim.tokens())["acct-device"].access,
        "the stored access token is the device login's",
      );
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

    test("print mode: /dispatch-login --browser completes through the callback; the opener's argv and environment hold no secret", {
      skip: process.platform !== "linux" && "the fake stands in for xdg-open, Linux's opener",
    }, async () => {
      // Its own pool, holding an account whose tokens the extension could reach when it starts
      // the opener: a login of a second account, the usual case.
      const own = makeHome();
      try {
        seedAccounts(own.agentDir, [
          {
            label: "kept",
            accountId: "acct-kept",
            tokens: sim.accounts["acct-kept"],
            state: { kind: "needsLogin", reason: "seeded: out of the way of the prompt below" },
          },
        ]);
        const opener = installFakeOpener(own.home);
        await sim.queueLogin("acct-browser");
        const run = await runPi(
          generation,
          ["-p", "--no-session", "-e", EXTENSION, "/dispatch-login laptop --browser"],
          {
            ...own,
            env: { ...env, ...opener.env },
          },
        );
        assert.equal(run.code, 0, run.stderr);
        const output = run.stdout + run.stderr;
        assert.match(output, /sign in in the browser that just opened/);
        assert.match(output, /added "laptop" \(browser@example\.com, plus\)/);

        const runs = await opener.runs();
        assert.equal(runs.length, 1, "the opener ran exactly once");
        const [opened] = runs;
        assert.equal(opened.error, undefined, "the fake browser played its part");
        const code = new URL(opened.location ?? "").searchParams.get("code");
        assert.ok(code, "the issuer redirected with a code");
        seenCodes.push(code);

        // No secret reached the opener: every token the simulator knows, this login's included,
        // and every code, this login's included.
        const secrets = await knownSecrets(sim);
        const issued = (await sim.tokens())["acct-browser"];
        assert.ok(secrets.includes(issued.refresh) && secrets.includes(code), "the scan covers this login");
        await assertNoSecretIn(sim, opened.argv, "the opener's argv");
        await assertNoSecretIn(sim, opened.environ, "the opener's environment");

        // Its argv is the sign-in URL pi showed and nothing else, carrying the PKCE challenge and
        // the state: no verifier, code or token.
        const shown = output.match(/http:\/\/127\.0\.0\.1:\d+\/oauth\/authorize\S+/)?.[0];
        assert.deepEqual(opened.argv, [shown]);
        const url = new URL(opened.argv[0]);
        assert.equal(`${url.origin}${url.pathname}`, new URL("oauth/authorize", `${sim.issuer}/`).href);
        assert.deepEqual([...url.searchParams.keys()].sort(), [
          "client_id",
          "code_challenge",
          "code_challenge_method",
          "codex_cli_simplified_flow",
          "id_token_add_organizations",
          "originator",
          "redirect_uri",
          "response_type",
          "scope",
          "state",
        ]);
        assert.match(url.searchParams.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
        assert.equal(url.searchParams.get("code_challenge_method"), "S256");
        assert.ok(url.searchParams.get("state"));
        // Its environment is pi's own, display included.
        assert.ok(opened.environ.includes("DISPLAY=:99"));
        assert.ok(opened.environ.includes(`PI_CODING_AGENT_DIR=${own.agentDir}`));

        // The callback answered the browser, and the account is saved with the tokens it was issued.
        assert.equal(opened.callbackStatus, 200, opened.callbackPage);
        assert.match(opened.callbackPage ?? "", /saved the account (&quot;|")laptop(&quot;|")/);
        const added = storedAccounts(own.agentDir).find((account) => account.label === "laptop");
        assert.equal(added?.chatgptAccountId, "acct-browser");
        // Compared without assert.equal, which would print the tokens on a mismatch.
        assert.ok(added?.tokens.accessToken === issued.access, "the stored access token is the one issued");
        assert.ok(added?.tokens.refreshToken === issued.refresh, "the stored refresh token is the one issued");

        // And it answers a prompt.
        const [model] = await listModels(generation, "dispatch", own);
        const reply = await runPi(
          generation,
          ["-p", "--no-session", "-e", EXTENSION, "--model", `dispatch/${model}`, "Say hello"],
          {
            ...own,
            env,
          },
        );
        assert.equal(reply.code, 0, reply.stderr);
        assert.match(reply.stdout, /Hello through the browser callback/);
        const served = (await sim.stats()).requests.filter((r) => r.accountId === "acct-browser");
        assert.equal(served.length, 1);
        assert.ok(served[0].headers.authorization === `Bearer ${issued.access}`, "served with the issued token");
      } finally {
        own.cleanup();
      }
    });

    test("no token or authorization code appears in anything pi printed", async () => {
      await assertNoSecretPrinted(sim);
    });
  });
}
