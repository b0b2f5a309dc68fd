// The demo without a terminal (as in CI): it must still show the pool, an answer and the limit
// being hit, and leave nothing behind, least of all in the caller's home.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { piVersion, ROOT } from "./harness.ts";

test("without a terminal the demo runs its story in print mode and cleans up after itself", () => {
  const sandbox = mkdtempSync(join(tmpdir(), "pi-dispatch-demo-test-"));
  try {
    const home = join(sandbox, "home");
    const tmp = join(sandbox, "tmp");
    mkdirSync(home);
    mkdirSync(tmp);
    const run = spawnSync(process.execPath, [join(ROOT, "scripts", "demo.ts")], {
      cwd: ROOT,
      env: { ...process.env, HOME: home, TMPDIR: tmp },
      stdio: ["ignore", "pipe", "pipe"],
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.equal(run.stdout.split(",")[0], `pi-dispatch demo: pi ${piVersion("pi1")}`, "it names the pi it runs");
    assert.match(run.stdout, /pi-dispatch: 3 account\(s\)/);
    assert.match(run.stdout, /answering as the "fresh" account/, "the untouched account serves first");
    assert.match(run.stdout, /acct-fresh\s+usageLimit\s+HTTP 429/, "the limit is hit during the demo");
    assert.match(run.stdout, /fresh: usage limit reached \(back .*\); now using almost-weekly/, "the rotation notice");
    assert.match(run.stdout, /answering as the "almost-weekly" account/, "then the soonest weekly reset");
    assert.ok(!existsSync(join(home, ".pi")), "the caller's ~/.pi is never created");
    assert.deepEqual(readdirSync(tmp), [], "the throwaway home is removed");
  } finally {
    rmSync(sandbox, { recursive: true, force: true });
  }
});
