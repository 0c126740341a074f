/**
 * The layers point one way: app -> plugins -> core -> runtime / io. Each rule of
 * {@linkcode RULES} is checked on every import of every file: core/ imports runtime/ and io/ but
 * never plugins/ or app/; runtime/ and io/ import none of core/, plugins/, app/ (the errors.ts
 * and deps.ts leaves at the root are theirs to import); plugins/ never imports app/, nor does
 * web/ (the browser page); mod.ts imports app/ only for the public helpers it re-exports.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { basename, isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * One import rule. `from` and `to` are paths relative to the root with `/` separators
 * (`core/trainer.ts`, `runtime/backend.ts`); `broken` says whether `from` may not import `to`.
 */
export interface ImportRule {
  /** What the rule says, named in each violation. */
  name: string;
  /** Whether importing `to` from `from` breaks the rule. */
  broken(from: string, to: string): boolean;
}

/** The top-level folder (or root file) of a root-relative path. */
function topLevel(path: string): string {
  return path.split("/")[0];
}

/** A file under `layer` imports nothing under the folders `forbidden`. */
function layerRule(layer: string, forbidden: readonly string[]): ImportRule {
  return {
    name: `${layer}/ imports none of ${forbidden.map((f) => `${f}/`).join(", ")}`,
    broken: (from, to) => topLevel(from) === layer && forbidden.includes(topLevel(to)),
  };
}

/** Every rule an import must keep; add one here (its own `broken`) to enforce another. */
export const RULES: readonly ImportRule[] = [
  layerRule("core", ["plugins", "app"]),
  layerRule("runtime", ["core", "plugins", "app"]),
  layerRule("io", ["core", "plugins", "app"]),
  layerRule("plugins", ["app"]),
  // the browser page's modules: the framework's layers, never the CLI (Deno-only)
  layerRule("web", ["app"]),
];

/** The folders whose files the rules are checked on. */
const CHECKED = ["core", "runtime", "io", "plugins", "app", "web"];

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

/** The root-relative path that `specifier` in `file` (root-relative) points to, or null. */
function targetPath(file: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  return relative(ROOT, resolve(ROOT, dirname(file), specifier)).split(/[\\/]/).join("/");
}

/** The top-level folder (relative to the root) that `specifier` in `file` points into. */
function targetLayer(file: string, specifier: string): string | null {
  const target = targetPath(relative(ROOT, file), specifier);
  return target === null ? null : topLevel(target);
}

/** The rules that `specifier`, imported by `file` (root-relative), breaks, as messages. */
export function ruleViolations(file: string, specifier: string): string[] {
  const to = targetPath(file, specifier);
  if (to === null) return [];
  return RULES.filter((rule) => rule.broken(file, to))
    .map((rule) => `${file} imports "${specifier}" (${rule.name})`);
}

/** Every import of the checked folders that breaks a rule, as "file imports specifier (rule)". */
export async function layeringViolations(): Promise<string[]> {
  const problems: string[] = [];
  for (const folder of CHECKED) {
    for await (const path of tsFiles(join(ROOT, folder))) {
      const file = relative(ROOT, path).split(/[\\/]/).join("/");
      for (const specifier of importSpecifiers(await Deno.readTextFile(path))) {
        problems.push(...ruleViolations(file, specifier));
      }
    }
  }
  return problems;
}

Deno.test("every import keeps the layering: core -> runtime / io one way, nothing below imports above", async () => {
  const problems = await layeringViolations();
  assert.deepEqual(problems, [], `layering violations:\n${problems.join("\n")}`);
});

Deno.test("each layering rule fails on an import that breaks it", () => {
  const broken: Array<[string, string]> = [
    ["core/trainer.ts", "../plugins/mod.ts"],
    ["core/recipe/load.ts", "../../app/cli.ts"],
    ["runtime/backend.ts", "../core/trainer.ts"],
    ["runtime/kernels/adam.ts", "../../core/optimizer.ts"],
    ["runtime/webgpu.ts", "../plugins/models/unet.ts"],
    ["runtime/webgpu.ts", "../app/cli.ts"],
    ["io/nifti.ts", "../core/errors.ts"],
    ["io/volume.ts", "../plugins/mod.ts"],
    ["io/volume.ts", "../app/cli.ts"],
    ["plugins/datasets/acdc.ts", "../../app/cli.ts"],
    ["web/segment.ts", "../app/predict.ts"],
  ];
  for (const [file, specifier] of broken) {
    assert.equal(ruleViolations(file, specifier).length, 1, `${file} -> ${specifier} passes`);
  }
  for (const rule of RULES) {
    assert.ok(
      broken.some(([file, specifier]) =>
        ruleViolations(file, specifier).some((m) => m.includes(rule.name))
      ),
      `no import above breaks "${rule.name}"`,
    );
  }
  const allowed: Array<[string, string]> = [
    ["core/optimizer.ts", "../runtime/kernels/adam.ts"],
    ["core/dataset.ts", "../io/volume.ts"],
    ["runtime/backend.ts", "../errors.ts"],
    ["io/volume.ts", "../errors.ts"],
    ["plugins/datasets/acdc.ts", "../../core/dataset.ts"],
    ["app/cli.ts", "../plugins/mod.ts"],
  ];
  for (const [file, specifier] of allowed) {
    assert.deepEqual(ruleViolations(file, specifier), [], `${file} -> ${specifier}`);
  }
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
