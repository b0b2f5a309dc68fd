// What npm publishes: the root package's contents, one platform package per target with the
// os/cpu/libc npm selects it by, every version in step, and `npm version` keeping them so.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

// Not the e2e harness: the release job runs this file alone, before anything is built.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** napi-rs platform name -> the fields npm matches against the installing machine. */
const PLATFORMS: Record<string, { os: string[]; cpu: string[]; libc?: string[] }> = {
  "linux-x64-gnu": { os: ["linux"], cpu: ["x64"], libc: ["glibc"] },
  "linux-arm64-gnu": { os: ["linux"], cpu: ["arm64"], libc: ["glibc"] },
  "linux-x64-musl": { os: ["linux"], cpu: ["x64"], libc: ["musl"] },
  "linux-arm64-musl": { os: ["linux"], cpu: ["arm64"], libc: ["musl"] },
  "darwin-x64": { os: ["darwin"], cpu: ["x64"] },
  "darwin-arm64": { os: ["darwin"], cpu: ["arm64"] },
  "win32-x64-msvc": { os: ["win32"], cpu: ["x64"] },
};

type Manifest = Record<string, unknown> & { name: string; version: string };

function readJson(dir: string, file = "package.json"): Manifest {
  return JSON.parse(readFileSync(join(dir, file), "utf8"));
}

test("npm pack of the root holds only the extension, the loader, its types, README and LICENSE", () => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: ROOT, encoding: "utf8", stdio: "pipe" });
  const [packed] = JSON.parse(out) as { files: { path: string }[] }[];
  assert.deepEqual(packed.files.map((file) => file.path).sort(), [
    "LICENSE",
    "README.md",
    "binding.cjs",
    "binding.d.cts",
    "index.ts",
    "package.json",
  ]);
});

test("one platform package per target, selected by os, cpu and libc, at the root's version", () => {
  const root = readJson(ROOT);
  assert.deepEqual(readdirSync(join(ROOT, "npm")).sort(), Object.keys(PLATFORMS).sort());
  const expectedOptional: Record<string, string> = {};
  for (const [platform, fields] of Object.entries(PLATFORMS)) {
    const manifest = readJson(join(ROOT, "npm", platform));
    const binary = `pi-dispatch.${platform}.node`;
    assert.equal(manifest.name, `pi-dispatch-${platform}`);
    assert.equal(manifest.version, root.version, manifest.name);
    assert.deepEqual(
      { os: manifest.os, cpu: manifest.cpu, libc: manifest.libc },
      { libc: undefined, ...fields },
      manifest.name,
    );
    assert.equal(manifest.main, binary);
    assert.deepEqual(manifest.files, [binary]);
    expectedOptional[manifest.name] = root.version;
  }
  assert.deepEqual(root.optionalDependencies, expectedOptional);
  // Nothing else may be required at install time: pi itself is an optional peer.
  assert.equal(root.dependencies, undefined);
});

test("`npm version <v>` bumps all eight package.json files, the lockfile and the loader in one commit", () => {
  const dir = mkdtempSync(join(tmpdir(), "pi-dispatch-version-"));
  try {
    for (const entry of ["package.json", "package-lock.json", "binding.cjs", "npm", "scripts"]) {
      cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
    }
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, encoding: "utf8", stdio: "pipe" });
    git("init", "-q");
    git("add", ".");
    git("-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "start");
    const before = readJson(dir).version;
    const stamps = readFileSync(join(dir, "binding.cjs"), "utf8").split(before).length - 1;

    const env = {
      ...process.env,
      GIT_AUTHOR_NAME: "test",
      GIT_AUTHOR_EMAIL: "test@localhost",
      GIT_COMMITTER_NAME: "test",
      GIT_COMMITTER_EMAIL: "test@localhost",
    };
    execFileSync("npm", ["version", "9.8.7"], { cwd: dir, env, stdio: "pipe" });

    const manifests = [readJson(dir), ...Object.keys(PLATFORMS).map((p) => readJson(join(dir, "npm", p)))];
    assert.equal(manifests.length, 8);
    for (const manifest of manifests) assert.equal(manifest.version, "9.8.7", manifest.name);
    for (const version of Object.values(readJson(dir).optionalDependencies as Record<string, string>)) {
      assert.equal(version, "9.8.7");
    }
    const lock = readJson(dir, "package-lock.json") as unknown as {
      version: string;
      packages: Record<string, { version: string; optionalDependencies: Record<string, string> }>;
    };
    assert.equal(lock.version, "9.8.7");
    assert.deepEqual(lock.packages[""].optionalDependencies, readJson(dir).optionalDependencies);
    const loader = readFileSync(join(dir, "binding.cjs"), "utf8");
    assert.ok(stamps > 0 && !loader.includes(before), "the loader still names the old version");
    assert.equal(loader.split("9.8.7").length - 1, stamps);

    assert.equal(git("status", "--porcelain"), "", "everything the bump changed is committed");
    assert.equal(git("tag", "--points-at", "HEAD").trim(), "v9.8.7");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
