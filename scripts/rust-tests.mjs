// Runs every Rust test (`cargo test --workspace`), showing the output of passing tests too, and
// fails if any of it holds a secret-shaped string (see secret-scan.mjs): a token in an error, a
// status line, a log or a panic message of any test is a leak, whether the test passed or not.
//
//   node scripts/rust-tests.mjs [extra cargo test arguments]
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, findSecrets } from "./secret-scan.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = ["test", "--workspace", "--color", "never", ...process.argv.slice(2), "--", "--show-output"];
const cargo = spawn("cargo", args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });

// Passed through as it comes, and kept for the scan; both streams into one transcript.
const transcript = [];
for (const [from, to] of [
  [cargo.stdout, process.stdout],
  [cargo.stderr, process.stderr],
]) {
  from.on("data", (chunk) => {
    transcript.push(chunk);
    to.write(chunk);
  });
}
const code = await new Promise((done) => cargo.on("close", (status, signal) => done(status ?? (signal ? 1 : 0))));

const log = join(root, "target", "rust-tests.log");
writeFileSync(log, Buffer.concat(transcript));
const found = findSecrets(Buffer.concat(transcript).toString("utf8"));
if (found.length > 0) {
  console.error(`\nSecret-shaped text in the Rust tests' output (${log}):\n${describe(found, "output")}`);
  process.exit(1);
}
console.error(`\nNo secret-shaped text in ${transcript.reduce((n, c) => n + c.length, 0)} bytes of Rust test output.`);
process.exit(code);
