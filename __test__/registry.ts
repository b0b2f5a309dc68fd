// A throwaway npm registry on 127.0.0.1 that serves our own packed packages and nothing else:
// enough for `npm install` (which is what `pi install npm:...` runs) to resolve pi-dispatch
// exactly as it would from the public registry, with no network beyond loopback.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface PackedPackage {
  /** The manifest npm resolves against: name, version, os/cpu/libc, dependencies. */
  manifest: Record<string, unknown> & { name: string; version: string };
  /** The tarball from `npm pack`; without one, the package is listed but cannot be downloaded,
   * like a platform package npm must never pick on this machine. */
  tarball?: string;
  integrity?: string;
  shasum?: string;
}

/** `npm pack <dir>` into `dest`; returns what the registry needs to serve it. */
export function npmPack(dir: string, dest: string): PackedPackage & { files: string[] } {
  const out = execFileSync("npm", ["pack", dir, "--json", "--pack-destination", dest], {
    cwd: dir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const [packed] = JSON.parse(out) as {
    filename: string;
    integrity: string;
    shasum: string;
    files: { path: string }[];
  }[];
  return {
    manifest: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")),
    tarball: join(dest, packed.filename),
    integrity: packed.integrity,
    shasum: packed.shasum,
    files: packed.files.map((file) => file.path).sort(),
  };
}

export class LoopbackRegistry {
  readonly url: string;
  /** Every path npm asked for, in order, to check what it resolved and downloaded. */
  readonly requests: string[];
  readonly #server: Server;

  constructor(server: Server, requests: string[]) {
    this.#server = server;
    this.requests = requests;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  static async start(packages: PackedPackage[]): Promise<LoopbackRegistry> {
    const requests: string[] = [];
    const byName = new Map(packages.map((pkg) => [pkg.manifest.name, pkg]));
    const server = createServer((request, response) => {
      const path = decodeURIComponent(new URL(request.url ?? "/", "http://127.0.0.1").pathname);
      requests.push(path);
      const tarball = path.match(/^\/(.+)\/-\/[^/]+\.tgz$/);
      const pkg = byName.get(tarball ? tarball[1] : path.slice(1));
      if (request.method !== "GET" || !pkg || (tarball && !pkg.tarball)) {
        response.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
        return;
      }
      if (tarball) {
        response.writeHead(200, { "content-type": "application/octet-stream" });
        response.end(readFileSync(pkg.tarball as string));
        return;
      }
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(packument(pkg, base)));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return new LoopbackRegistry(server, requests);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

function packument(pkg: PackedPackage, base: string): Record<string, unknown> {
  const { name, version } = pkg.manifest;
  const file = `${name}-${version}.tgz`;
  const dist: Record<string, string> = { tarball: `${base}/${name}/-/${file}` };
  if (pkg.integrity) dist.integrity = pkg.integrity;
  if (pkg.shasum) dist.shasum = pkg.shasum;
  return {
    name,
    "dist-tags": { latest: version },
    versions: { [version]: { ...pkg.manifest, _id: `${name}@${version}`, dist } },
  };
}
