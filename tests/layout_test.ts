/**
 * The layers point one way: app -> plugins -> core / io / runtime. A file in core/, io/ or
 * runtime/ never imports plugins/ or app/, a file in plugins/ never imports app/, and mod.ts
 * imports app/ only for the public helpers it re-exports.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { basename, isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The layers a file in each folder may not import. */
const FORBIDDEN: Record<string, string[]> = {
  core: ["plugins", "app"],
  io: ["plugins", "app"],
  runtime: ["plugins", "app"],
  plugins: ["app"],
};

/** Exactly what mod.ts may take from app/ (public helpers it re-exported before the move). */
const MOD_APP_IMPORTS = ["app/export.ts"];

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* tsFiles(path);
    else if (entry.isFile && entry.name.endsWith(".ts")) yield path;
  }
}

/** Relative specifiers of static imports / re-exports and dynamic `import("...")` calls. */
export function importSpecifiers(source: string): string[] {
  // drop comments so that JSDoc examples do not count
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  const patterns = [
    /(?:^|[;\s])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']/g,
    /(?:^|[;\s])import\s*["']([^"']+)["']/g,
    /import\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push(m[1]);
  return out;
}

/** The top-level folder (relative to the root) that `specifier` in `file` points into. */
function targetLayer(file: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  const target = relative(ROOT, resolve(dirname(file), specifier));
  return target.split(/[\\/]/)[0];
}

/** Every import that breaks the layering, as "file imports specifier". */
export async function layeringViolations(): Promise<string[]> {
  const problems: string[] = [];
  for (const [layer, forbidden] of Object.entries(FORBIDDEN)) {
    for await (const file of tsFiles(join(ROOT, layer))) {
      const source = await Deno.readTextFile(file);
      for (const specifier of importSpecifiers(source)) {
        const target = targetLayer(file, specifier);
        if (target !== null && forbidden.includes(target)) {
          problems.push(`${relative(ROOT, file)} imports "${specifier}" (${layer} -> ${target})`);
        }
      }
    }
  }
  return problems;
}

Deno.test("core/, io/ and runtime/ import neither plugins/ nor app/; plugins/ does not import app/", async () => {
  const problems = await layeringViolations();
  assert.deepEqual(problems, [], `layering violations:\n${problems.join("\n")}`);
});

Deno.test("mod.ts imports app/ only for the public helpers it re-exports", async () => {
  const file = join(ROOT, "mod.ts");
  const fromApp = importSpecifiers(await Deno.readTextFile(file))
    .filter((s) => targetLayer(file, s) === "app")
    .map((s) => relative(ROOT, resolve(ROOT, s)));
  for (const target of fromApp) {
    assert.ok(MOD_APP_IMPORTS.includes(target), `mod.ts imports "${target}" from app/`);
  }
  const mod = await import("../mod.ts");
  assert.equal(typeof mod.datasetOverride, "function");
  assert.equal(typeof mod.exportPrediction, "function");
});

Deno.test("the import scanner sees static, re-export and dynamic imports but not comments", () => {
  const source = [
    `import { a } from "../plugins/x.ts";`,
    `export { b } from "../app/y.ts";`,
    `import type { C } from "./c.ts";`,
    `const m = await import("../app/z.ts");`,
    `import "../plugins/side_effect.ts";`,
    `// import { d } from "../app/commented.ts";`,
    `/** @example import { e } from "../app/doc.ts"; */`,
  ].join("\n");
  assert.deepEqual(importSpecifiers(source).sort(), [
    "../app/y.ts",
    "../app/z.ts",
    "../plugins/side_effect.ts",
    "../plugins/x.ts",
    "./c.ts",
  ]);
});

// --- Private modules: a `_`-prefixed module belongs to its folder. ---

/** Top-level folders whose files are not checked: tests may import anything; the rest is not code. */
const PRIVATE_IMPORTS_UNCHECKED = new Set(["tests", "runs", "node_modules", "results", "docs"]);

/**
 * Whether `specifier` in `file` (both relative to the root) imports another folder's private
 * module: one whose name starts with `_`, from a file that is neither in its folder nor below it.
 */
export function isForeignPrivateImport(file: string, specifier: string): boolean {
  if (!specifier.startsWith(".")) return false;
  const target = resolve(ROOT, dirname(file), specifier);
  if (!basename(target).startsWith("_")) return false;
  const fromOwnFolder = relative(dirname(target), resolve(ROOT, dirname(file)));
  return fromOwnFolder.startsWith("..") || isAbsolute(fromOwnFolder);
}

/** Every import of another folder's `_` module outside tests/, as "file imports specifier". */
export async function foreignPrivateImports(): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(ROOT)) {
    if (entry.name.startsWith(".") || PRIVATE_IMPORTS_UNCHECKED.has(entry.name)) continue;
    const path = join(ROOT, entry.name);
    if (entry.isDirectory) { for await (const file of tsFiles(path)) files.push(file); }
    else if (entry.isFile && entry.name.endsWith(".ts")) files.push(path);
  }
  const problems: string[] = [];
  for (const file of files.sort()) {
    const name = relative(ROOT, file);
    for (const specifier of importSpecifiers(await Deno.readTextFile(file))) {
      if (isForeignPrivateImport(name, specifier)) problems.push(`${name} imports "${specifier}"`);
    }
  }
  return problems;
}

Deno.test("nothing outside a folder imports that folder's _ modules (tests/ may)", async () => {
  const problems = await foreignPrivateImports();
  assert.deepEqual(problems, [], `imports of another folder's _ modules:\n${problems.join("\n")}`);
});

Deno.test("a _ module may be imported from its folder and below, not from elsewhere", () => {
  assert.equal(isForeignPrivateImport("app/cli.ts", "../plugins/datasets/_cache.ts"), true);
  assert.equal(isForeignPrivateImport("plugins/mod.ts", "./datasets/_split.ts"), true);
  assert.equal(isForeignPrivateImport("mod.ts", "./app/_fs.ts"), true);
  assert.equal(isForeignPrivateImport("plugins/datasets/acdc.ts", "./_split.ts"), false);
  assert.equal(isForeignPrivateImport("plugins/datasets/x/y.ts", "../_split.ts"), false);
  assert.equal(
    isForeignPrivateImport("app/predict.ts", "../plugins/datasets/preprocess.ts"),
    false,
  );
  assert.equal(isForeignPrivateImport("app/cli.ts", "npm:_private"), false);
});
