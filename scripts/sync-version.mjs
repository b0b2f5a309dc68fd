// Part of `npm version <v>` (the package.json `version` script, after `napi version` has set
// npm/*/package.json): carries the new version into the places napi leaves behind, so one command
// bumps every package consistently. The root's optionalDependencies must name the platform
// packages at exactly this version, and the committed loader checks it against them.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const readJson = (file) => JSON.parse(readFileSync(join(root, file), "utf8"));
const writeJson = (file, value) => writeFileSync(join(root, file), `${JSON.stringify(value, null, 2)}\n`);

const pkg = readJson("package.json");
const { version } = pkg;
const platformPackages = Object.keys(pkg.optionalDependencies).filter((name) => name.startsWith(`${pkg.name}-`));
if (platformPackages.length === 0) throw new Error("package.json lists no platform packages");

for (const name of platformPackages) pkg.optionalDependencies[name] = version;
writeJson("package.json", pkg);

const lock = readJson("package-lock.json");
for (const name of platformPackages) lock.packages[""].optionalDependencies[name] = version;
writeJson("package-lock.json", lock);

// The generated loader embeds the version it was generated for; `npm run build` writes the same.
const loader = readFileSync(join(root, "binding.cjs"), "utf8");
const previous = loader.match(/bindingPackageVersion !== '([^']+)'/)?.[1];
if (!previous) throw new Error("binding.cjs carries no version: regenerate it with npm run build");
writeFileSync(
  join(root, "binding.cjs"),
  loader
    .replaceAll(`bindingPackageVersion !== '${previous}'`, `bindingPackageVersion !== '${version}'`)
    .replaceAll(`mismatch, expected ${previous} but`, `mismatch, expected ${version} but`),
);

console.log(`${pkg.name} ${version}: root, ${platformPackages.length} platform packages, lockfile and loader`);
