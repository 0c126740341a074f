/**
 * The page's bundle, built by `serve` on first use: `deno bundle --platform browser` on the
 * page's entry module (`web/app.ts`, found from this module's own URL, so a `file:` checkout and
 * a command installed from an `https:` URL both work), written with tfjs's wasm binaries into the
 * per-user cache (`$MISSL_CACHE_DIR/web/<key>/`, else `~/.cache/mi-ssl/web/<key>/`). The key is
 * a SHA-256 of every module of the page's graph (`deno info --json`: each module's specifier and
 * contents, and the npm packages with their versions), so an edited source or another version
 * of the framework builds a new bundle and an unchanged one is reused.
 *
 * @module
 */
import { join } from "node:path";
import { defaultCacheDir } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { runnableDeno } from "./child_deno.ts";

/** tfjs's wasm binaries the page may load (no threads in the page: no threaded build). */
export const WASM_FILES = ["tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm"] as const;

/** The page's entry module and its import map (`node:zlib`, `node:os`, `commander` replaced). */
const ENTRY = new URL("../web/app.ts", import.meta.url);
const IMPORT_MAP = new URL("../web/import_map.json", import.meta.url);

/** The built page: the bundle and the wasm binaries, by file name. */
export type PageBundle = Record<"app.js" | typeof WASM_FILES[number], Uint8Array>;

/** The folder under the cache that holds the bundles (`<cache>/web`), or null without a cache. */
export function bundleCacheDir(env?: (name: string) => string | undefined): string | null {
  const cache = defaultCacheDir(env);
  return cache === null ? null : join(cache, "web");
}

async function deno(args: string[], cwd: string): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(await runnableDeno() ?? "deno", {
      args,
      cwd,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
  } catch (error) {
    throw new UserError(
      `Cannot build the page: cannot start deno (${(error as Error).message})`,
    );
  }
  if (out.code !== 0) {
    const said = new TextDecoder().decode(out.stderr).trim().split("\n")
      .filter((l) => l.trim() && !/^\s*(Stack backtrace:|\d+: <unknown>)/.test(l)).slice(-3)
      .join(" | ");
    throw new UserError(`Cannot build the page: deno ${args[0]} failed: ${said}`);
  }
  return new TextDecoder().decode(out.stdout);
}

interface Graph {
  modules: { specifier: string; local?: string }[];
  npmPackages: Record<string, unknown>;
}

/** The SHA-256 (hex) of the page's module graph: specifiers, contents, npm package versions. */
async function graphKey(graph: Graph): Promise<string> {
  const parts: Uint8Array[] = [];
  const text = (s: string) => parts.push(new TextEncoder().encode(s + "\n"));
  text(`deno ${Deno.version.deno}`);
  for (const m of [...graph.modules].sort((a, b) => a.specifier < b.specifier ? -1 : 1)) {
    text(m.specifier);
    if (m.local) parts.push(await Deno.readFile(m.local));
  }
  for (const name of Object.keys(graph.npmPackages).sort()) text(name);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (all.set(p, at), at += p.length);
  return await sha256(all);
}

/** SHA-256 of `bytes`, hex. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Read the built files from `dir`, or null when one is missing. */
async function readBuilt(dir: string): Promise<PageBundle | null> {
  try {
    const files: Partial<PageBundle> = {};
    for (const name of ["app.js", ...WASM_FILES] as const) {
      files[name] = await Deno.readFile(join(dir, name));
    }
    return files as PageBundle;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * The page's bundle and wasm binaries: read from the cache when they were built for these
 * sources, else built there first (`log` says so: it takes a few seconds).
 *
 * @throws {UserError} Without a cache folder, or when `deno bundle` fails.
 */
export async function pageBundle(log: (line: string) => void = () => {}): Promise<PageBundle> {
  const root = bundleCacheDir();
  if (root === null) {
    throw new UserError(
      "Cannot build the page: no cache folder (set MISSL_CACHE_DIR, XDG_CACHE_HOME or HOME)",
    );
  }
  const entry = ENTRY.href;
  const map = IMPORT_MAP.href;
  // a framework imported by URL: its host, as the command itself was granted
  const remote = /^https?:$/.test(ENTRY.protocol) ? [`--allow-import=${ENTRY.host}`] : [];
  // the child runs in the cache so that no deno.json of the user's folder applies
  await Deno.mkdir(root, { recursive: true });
  const graph: Graph = JSON.parse(
    await deno(
      ["info", "--json", "--no-config", "--no-lock", ...remote, "--import-map", map, entry],
      root,
    ),
  );
  const key = (await graphKey(graph)).slice(0, 16);
  const dir = join(root, key);
  const cached = await readBuilt(dir);
  if (cached) return cached;

  log(`building the page's bundle into ${dir} (once for this version of the framework)`);
  const tmp = await Deno.makeTempDir({ dir: root, prefix: `${key}.tmp-` });
  try {
    await deno([
      "bundle",
      "--quiet",
      "--no-config",
      "--no-lock",
      ...remote,
      "--platform",
      "browser",
      "--import-map",
      map,
      "-o",
      join(tmp, "app.js"),
      entry,
    ], root);
    const wasm = await wasmDir(graph, root);
    for (const name of WASM_FILES) await Deno.copyFile(join(wasm, name), join(tmp, name));
    try {
      await Deno.rename(tmp, dir);
    } catch (error) {
      // another serve built it meanwhile: take theirs
      if (!(await readBuilt(dir))) throw error;
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  const built = await readBuilt(dir);
  if (!built) throw new UserError(`Cannot build the page: ${dir} is incomplete`);
  return built;
}

/** Where Deno's npm cache holds the graph's `@tensorflow/tfjs-backend-wasm` (its `dist/`). */
async function wasmDir(graph: Graph, cwd: string): Promise<string> {
  const pkg = Object.keys(graph.npmPackages).find((n) =>
    n.startsWith("@tensorflow/tfjs-backend-wasm@")
  );
  if (!pkg) throw new UserError("Cannot build the page: its graph has no tfjs-backend-wasm");
  const version = pkg.split("@")[2].split("_")[0];
  const info = JSON.parse(await deno(["info", "--json", "--no-config"], cwd));
  const dir = join(
    info.npmCache,
    "registry.npmjs.org",
    "@tensorflow",
    "tfjs-backend-wasm",
    version,
    "dist",
  );
  for (const name of WASM_FILES) {
    try {
      await Deno.stat(join(dir, name));
    } catch {
      throw new UserError(`Cannot build the page: tfjs's ${name} is not in ${dir}`);
    }
  }
  return dir;
}
