// The scan npm test runs over all Rust test output (scripts/secret-scan.mjs): it must find every
// shape of test secret, pass ordinary output, and never repeat a secret in its own report.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SCAN = join(resolve(dirname(fileURLToPath(import.meta.url)), ".."), "scripts", "secret-scan.mjs");

function scan(text: string): { found: boolean; report: string } {
  const run = spawnSync(process.execPath, [SCAN], { input: text, encoding: "utf8" });
  assert.ok(run.status === 0 || run.status === 1, run.stderr);
  return { found: run.status === 1, report: run.stderr };
}

test("every shape of test secret is found, and the report never repeats it", () => {
  const secrets = {
    "access token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLWEifQ.c2lnbmF0dXJl",
    "proxy credential payload": "eyJodHRwczovL2FwaS5vcGVuYWkuY29tL2F1dGgiOnt9fQ==",
    "refresh token": "rt_sim_Zk3JmQ0V1c2VyLWFiY2RlZmdo",
    "authorization code": "ac_sim_q9Jx0c2VyLWFiY2Rl",
    "device handle": "deviceauth_sim_b2RlLWhhbmRsZQ",
    "fixture token": "sentinel-refresh-acct-7",
  };
  for (const [kind, secret] of Object.entries(secrets)) {
    const { found, report } = scan(`running 3 tests\nuser sees: failed for ${secret} here\ntest result: ok\n`);
    assert.ok(found, kind);
    assert.match(report, /stdin:2:/, kind);
    assert.ok(!report.includes(secret), `${kind}: the report repeats the secret`);
  }
});

test("ordinary test output passes", () => {
  const output = [
    "test a_reused_refresh_token_marks_the_account_needs_login_and_keeps_the_account ... ok",
    'user sees: event: response.failed data: {"type":"response.failed","response":{"error":{"code":"refresh_token_reused"}}}',
    "user sees: cannot use the accounts file /tmp/x/dispatch.json: a value of the wrong type at accounts[0].tokens",
    "the sentinel scan header eyJ short",
    "test result: ok. 15 passed; 0 failed",
  ].join("\n");
  const { found, report } = scan(output);
  assert.ok(!found, report);
});
