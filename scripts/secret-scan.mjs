// Finds text shaped like the secrets the test suites use, so a test run can prove that no token
// reached its output. Every secret a test makes has one of these shapes: the simulator's JWTs
// (access and id tokens; the proxy's credential is a JWT too), its refresh tokens, authorization
// codes and device-login handles, and the `sentinel-` tokens of the Rust fixtures.
//
//   node scripts/secret-scan.mjs < output.log     exit 1 and a report when anything is found
//
// The report names the line and the kind of secret, never the secret itself.
import { pathToFileURL } from "node:url";

const SHAPES = [
  ["JWT", /eyJ[A-Za-z0-9_+/-]{16,}/g],
  ["simulator refresh token", /rt_sim_[A-Za-z0-9_-]{8,}/g],
  ["authorization code", /ac_sim_[A-Za-z0-9_-]{8,}/g],
  ["device login handle", /deviceauth_sim_[A-Za-z0-9_-]{8,}/g],
  ["fixture token", /sentinel-[A-Za-z0-9_-]+/g],
];

/** Every secret-shaped match in `text`: its 1-based line, its kind, and the line redacted. */
export function findSecrets(text) {
  const found = [];
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    let redacted = line;
    const kinds = [];
    for (const [kind, shape] of SHAPES) {
      if (line.match(shape)) {
        kinds.push(kind);
        redacted = redacted.replace(shape, `<${kind}>`);
      }
    }
    if (kinds.length > 0) found.push({ line: index + 1, kinds, redacted });
  });
  return found;
}

/** A report for people: where each secret was and what it was, with the secrets blanked. */
export function describe(found, source) {
  return found
    .map(({ line, kinds, redacted }) => `${source}:${line}: ${kinds.join(", ")}: ${redacted.slice(0, 300)}`)
    .join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const found = findSecrets(Buffer.concat(chunks).toString("utf8"));
  if (found.length > 0) {
    console.error(`secret-shaped text found:\n${describe(found, "stdin")}`);
    process.exit(1);
  }
}
