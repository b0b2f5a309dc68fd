// Builds the Linux gnu addon against glibc 2.17 with cargo-zigbuild, then fails if the binary
// still asks for any newer GLIBC_x.y symbol version: a host build would require this machine's
// glibc and refuse to load on older distributions. The release workflow builds its Linux gnu
// binaries with this same script.
//
//   node scripts/check-glibc.mjs [--target <rust triple>] [--out <file>]
//
// zig comes from PyPI (`ziglang`) and cargo-zigbuild from crates.io, both pinned and installed
// into .tools/, never globally. Linux only (readelf).
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ZIGLANG_VERSION = "0.15.2";
const CARGO_ZIGBUILD_VERSION = "0.24.1";
const MAX_GLIBC = [2, 17];

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tools = join(root, ".tools");
const { values: args } = parseArgs({
  options: { target: { type: "string", default: "x86_64-unknown-linux-gnu" }, out: { type: "string" } },
});
const run = (command, argv, env) =>
  execFileSync(command, argv, { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...env } });

const zigDir = join(tools, `ziglang-${ZIGLANG_VERSION}`);
const zig = join(zigDir, "ziglang", "zig");
if (!existsSync(zig)) {
  const pip = [
    "-m",
    "pip",
    "install",
    "-q",
    "--disable-pip-version-check",
    "--root-user-action=ignore",
    "--no-deps",
    "--target",
    zigDir,
  ];
  run("python3", [...pip, `ziglang==${ZIGLANG_VERSION}`]);
}
const zigbuildRoot = join(tools, `cargo-zigbuild-${CARGO_ZIGBUILD_VERSION}`);
if (!existsSync(join(zigbuildRoot, "bin", "cargo-zigbuild"))) {
  run("cargo", ["install", "cargo-zigbuild", "--version", CARGO_ZIGBUILD_VERSION, "--locked", "--root", zigbuildRoot]);
}

// A target dir of its own: sharing target/ with the host build flips the fingerprints of the
// host-side units (same triple, other linker settings), and each build would redo the other's.
const targetDir = join(root, "target", "glibc-2.17");
const started = Date.now();
const build = ["zigbuild", "--release", "--lib", "--features", "node", "--target-dir", targetDir];
run("cargo", [...build, "--target", `${args.target}.2.17`], {
  PATH: `${join(zigbuildRoot, "bin")}${delimiter}${process.env.PATH}`,
  CARGO_ZIGBUILD_ZIG_PATH: zig,
  // zig's compiled glibc stubs and cargo-zigbuild's wrappers stay in .tools/ too.
  ZIG_GLOBAL_CACHE_DIR: join(tools, "zig-cache"),
  CARGO_ZIGBUILD_CACHE_DIR: join(tools, "cargo-zigbuild-cache"),
});
const binary = join(targetDir, args.target, "release", "libpi_dispatch.so");
console.log(`built ${binary} in ${Math.round((Date.now() - started) / 1000)} s`);

// readelf reads any architecture's ELF, so cross-built arm64 binaries are checked here too.
const versionInfo = execFileSync("readelf", ["--version-info", "--wide", binary], { encoding: "utf8" });
const required = [...new Set([...versionInfo.matchAll(/Name: GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => m[0]))]
  .map((name) => name.slice("Name: GLIBC_".length))
  .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
if (required.length === 0) throw new Error(`${binary} requires no GLIBC symbol versions: is it a gnu build?`);
console.log(`GLIBC versions required: ${required.join(" ")}`);
const tooNew = required.filter((version) => {
  const [major, minor] = version.split(".").map(Number);
  return major > MAX_GLIBC[0] || (major === MAX_GLIBC[0] && minor > MAX_GLIBC[1]);
});
if (tooNew.length > 0) {
  console.error(`FAIL: needs glibc newer than ${MAX_GLIBC.join(".")}: ${tooNew.join(" ")}`);
  process.exit(1);
}
console.log(`ok: loads on glibc ${MAX_GLIBC.join(".")} and newer`);
if (args.out) copyFileSync(binary, resolve(root, args.out));
