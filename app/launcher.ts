/**
 * The least-privilege launcher behind `deno task run`: it reads the recipes (never importing
 * their plugin modules), works out what the run needs, and starts `app/cli.ts run` in a child Deno
 * process granted only that:
 *
 * - **read**: the recipe files (with their `extends:` chain), Deno's npm package cache, the local
 *   files of each plugin's static import graph (`deno info --json`: the plugin, the framework's
 *   `mod.ts` and what it imports, ...), the dataset's data
 *   and cache folders (as the built-in dataset plugin declares them, see
 *   {@linkcode DatasetFactory.access}) and the run folder;
 * - **write**: the run folder (`--out`, else the recipe's `output.dir`; the run directory with
 *   `--resume`) and the dataset's cache folders;
 * - **env**: the variables the recipes name (`${VAR}`), `TMPDIR`, `HOME`, `DENO_DIR`,
 *   `XDG_CACHE_HOME` (to find an installed tfjs-node) and the two the `yaml` package looks up;
 * - **import**: the hosts of the remote modules in the plugins' import graphs (`https://...`);
 *   without any,
 *   `--no-remote` (Deno would otherwise import from its default hosts);
 * - **run**: `deno` only, with `--jobs N` > 1;
 * - no network, no system information, no FFI (except for the native tfjs-node backend, whose
 *   addon cannot be sandboxed: it gets ffi, env and sys);
 * - **webgpu**: `--unstable-webgpu` (Deno's `navigator.gpu`) when a recipe's backend is `webgpu`
 *   or `auto` (which takes a hardware GPU when there is one); WebGPU needs no permission beyond
 *   that flag (the driver is native code, loaded by Deno itself).
 *
 * `deno task eval` is planned the same way from the run directory (plus `--data` and the
 * `--export` folder), and `deno task predict` gets the run directory, the scans it is given
 * (a MetaImage header with its data file), the `--out` folder, and the run's plugins and
 * backend, but no dataset.
 *
 * `--grant kind=value[,value]` (repeatable) adds to a kind, e.g. `--grant read=/data` for a
 * dataset from a plugin module, whose files the launcher cannot know. To run with other
 * permissions altogether, call `deno run <flags> app/cli.ts run ...` directly.
 *
 * @module
 */
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Command, CommanderError } from "../deps.ts";
import {
  commandParser,
  EVAL_COMMAND,
  PREDICT_COMMAND,
  RUN_COMMAND,
  setOverrides,
} from "./commands.ts";
import { nodeBindingInstalled } from "../runtime/backend.ts";
import { CACHE_DIR_ENV, datasets, defaultCacheDir } from "../core/dataset.ts";
import { datasetOverride } from "./export.ts";
import { UserError } from "../core/errors.ts";
import { COMMIT_ENV, frameworkDir, gitCommit } from "../core/provenance.ts";
import { isUrlLike, loadRecipe, type Recipe } from "../core/recipe.ts";
import { RunDir } from "../core/run_dir.ts";
import { cliPath, runnableDeno } from "./sweep.ts";
import type { SweepRunOptions } from "./results_cli.ts";
import { registerBuiltins } from "../plugins/mod.ts";

/** Environment variables every run may read (besides the recipe's): see the module doc. */
export const BASE_ENV = [
  "TMPDIR",
  // where Deno's cache is, to tell whether tfjs-node is installed (runtime/backend.ts), and the
  // dataset cache (core/dataset.ts defaultCacheDir)
  "HOME",
  "DENO_DIR",
  "XDG_CACHE_HOME",
  CACHE_DIR_ENV,
  "LOG_TOKENS", // looked up by the `yaml` package when parsing
  "LOG_STREAM",
  COMMIT_ENV, // the framework's commit, recorded in summary.json (core/provenance.ts)
] as const;

/** Name of the variable through which a `--jobs` run passes its permissions to its children. */
export const PERMISSIONS_ENV = "MISSL_PERMISSION_FLAGS";

/** The kinds of `--grant`. */
export const GRANT_KINDS = ["read", "write", "env", "net", "import", "sys", "run", "ffi"] as const;
export type GrantKind = typeof GRANT_KINDS[number];

/** What a run is granted, by kind: a list of values, or `true` for everything of that kind. */
export type Grants = Partial<Record<GrantKind, string[] | true>>;

/** The `run` arguments the launcher understands (those of `app/cli.ts run`, plus `--grant`). */
export interface LaunchArgs extends SweepRunOptions {
  recipes: string[];
  grant: string[];
}

/** Where the framework and the package cache are (found once per launch). */
export interface LaunchEnvironment {
  /** The working directory that relative paths are resolved against. */
  cwd: string;
  /** The framework's root folder (above `app/cli.ts`), or its URL when imported by URL. */
  frameworkDir: string;
  /** Deno's npm package cache, when known. */
  npmCache?: string;
  /** The temporary folder. */
  tmpDir: string;
  /** Environment lookup. */
  env: (name: string) => string | undefined;
  /** `node_modules` folders in use (beside the working directory or the framework). */
  nodeModules?: string[];
  /** Whether tfjs-node(-gpu)'s native binding is installed (so that `auto` would load it). */
  nativeBackend?: boolean;
  /**
   * The static import graph of a plugin module (its specifier: an absolute path or a URL): the
   * specifiers of every module in it, or `undefined` when it cannot be worked out (then only
   * the plugin itself is granted). @default {@linkcode moduleGraph} (`deno info --json`)
   */
  moduleGraph?: (specifier: string) => Promise<string[] | undefined>;
}

/** Parse the arguments of `run` as `app/cli.ts run` does (plus `--grant`). */
export function parseLaunchArgs(args: string[]): LaunchArgs {
  let parsed: LaunchArgs | undefined;
  const program = commandParser(RUN_COMMAND)
    .action((recipes: string[], opts: Omit<LaunchArgs, "recipes"> & { help?: boolean }) => {
      parsed = { ...opts, recipes };
    });
  return parseWith(program, args, () => parsed!);
}

function parseWith<T>(program: Command, args: string[], result: () => T): T {
  program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  try {
    program.parse(args, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) throw new UserError(error.message.replace(/^error: /, ""));
    throw error;
  }
  return result();
}

/** `--grant kind=a,b` values, merged by kind; `--grant net` (no value) grants the whole kind. */
export function parseGrants(specs: string[]): Grants {
  const grants: Grants = {};
  for (const spec of specs) {
    const eq = spec.indexOf("=");
    const kind = (eq < 0 ? spec : spec.slice(0, eq)).trim() as GrantKind;
    if (!GRANT_KINDS.includes(kind)) {
      throw new UserError(
        `--grant "${spec}": unknown kind "${kind}"; kinds: ${GRANT_KINDS.join(", ")} ` +
          `(e.g. --grant read=/data/acdc)`,
      );
    }
    if (eq < 0) {
      grants[kind] = true;
      continue;
    }
    const values = spec.slice(eq + 1).split(",").map((v) => v.trim()).filter((v) => v !== "");
    if (values.length === 0) throw new UserError(`--grant "${spec}": no value after "="`);
    const had = grants[kind];
    if (had !== true) grants[kind] = [...(had ?? []), ...values];
  }
  return grants;
}

/** Add `values` to `grants[kind]` (no-op when the kind is granted wholly). */
function add(grants: Grants, kind: GrantKind, ...values: string[]): void {
  const had = grants[kind];
  if (had === true) return;
  const list = had ?? [];
  for (const v of values) if (!list.includes(v)) list.push(v);
  grants[kind] = list;
}

/** The grant a module specifier needs: read for a local file, import for a remote host. */
function moduleGrant(grants: Grants, spec: string, cwd: string): void {
  if (!isUrlLike(spec)) {
    add(grants, "read", isAbsolute(spec) ? spec : resolve(cwd, spec));
    return;
  }
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return; // not a URL Deno could import either: the run reports it
  }
  if (url.protocol === "file:") add(grants, "read", fileURLToPath(url));
  else if (url.protocol === "http:" || url.protocol === "https:") add(grants, "import", url.host);
  // npm: / jsr: / node: modules are fetched or provided by Deno itself; nothing to grant
}

/**
 * The grants of one plugin module and of its static import graph: a dynamically imported
 * plugin's own imports (the framework's `mod.ts` among them) are read from disk under the run's
 * permissions, so each local module of the graph is readable and each remote host importable;
 * nothing else is.
 */
async function pluginGrants(
  grants: Grants,
  spec: string,
  launch: LaunchEnvironment,
  graphFiles: Set<string>,
): Promise<void> {
  moduleGrant(grants, spec, launch.cwd);
  const own = new Set(asList(grants.read));
  const specifier = isUrlLike(spec) || isAbsolute(spec) ? spec : resolve(launch.cwd, spec);
  const graph = await (launch.moduleGraph ?? moduleGraph)(specifier);
  for (const module of graph ?? []) moduleGrant(grants, module, launch.cwd);
  for (const file of asList(grants.read)) if (!own.has(file)) graphFiles.add(file);
}

function asList(value: string[] | true | undefined): string[] {
  return Array.isArray(value) ? value : [];
}

/**
 * Every module of the static import graph of `specifier` (an absolute path or a URL), from
 * `deno info --json` (which also fetches a remote plugin's modules into Deno's cache, as the run
 * would), redirects included; `undefined` when `deno info` fails (e.g. a missing file or no
 * network: the run then reports the problem itself).
 */
export async function moduleGraph(
  specifier: string,
  deno: string = Deno.execPath(),
): Promise<string[] | undefined> {
  try {
    const out = await new Deno.Command(deno, {
      args: ["info", "--json", specifier],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).output();
    if (!out.success) return undefined;
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules?: Array<{ specifier: string }>;
      redirects?: Record<string, string>;
    };
    const specifiers = (info.modules ?? []).map((m) => m.specifier);
    for (const [from, to] of Object.entries(info.redirects ?? {})) specifiers.push(from, to);
    return specifiers;
  } catch {
    return undefined;
  }
}

/**
 * The grants of one loaded recipe: its files, the variables it names, its plugins and (unless
 * `withData` is false, as for `predict`, which reads no dataset) its data.
 */
async function recipeGrants(
  grants: Grants,
  recipe: Recipe,
  baseDir: string,
  launch: LaunchEnvironment,
  notes: string[],
  graphFiles: Set<string>,
  withData = true,
): Promise<void> {
  for (const spec of recipe.plugins) await pluginGrants(grants, spec, launch, graphFiles);
  const native = recipe.backend === "tensorflow" || recipe.backend === "tensorflow-gpu" ||
    (recipe.backend === "auto" && launch.nativeBackend);
  if (native) {
    // A native addon runs with the rights of the whole process whatever Deno grants; loading
    // it needs FFI, and libtensorflow reads its environment and system information.
    grants.ffi = true;
    grants.env = true;
    grants.sys = true;
    add(grants, "read", resolve(launch.cwd, "node_modules"));
    const note = `backend ${recipe.backend} loads tfjs-node's native addon, which cannot be ` +
      `sandboxed: the run is granted ffi, env and sys`;
    if (!notes.includes(note)) notes.push(note);
  }
  if (!withData) return;
  const type = recipe.dataset.type;
  const factory = datasets.has(type) ? datasets.get(type) : undefined;
  const { type: _type, ...raw } = recipe.dataset;
  if (factory === undefined) {
    // An unknown type the run reports itself; the note is for a dataset a plugin registers.
    if (!await mayRegister(recipe.plugins, type, launch, graphFiles)) return;
    notes.push(
      `dataset "${type}" comes from a plugin module, so the launcher cannot tell which files ` +
        `it reads; grant them with --grant read=<folder> (and --grant write=<folder> for a cache)`,
    );
    return;
  }
  if (!factory.access) return;
  const parsed = factory.options.safeParse(raw);
  if (!parsed.success) return; // the run itself reports the bad options
  const access = factory.access(parsed.data, {
    baseDir,
    tmpDir: launch.tmpDir,
    cacheDir: defaultCacheDir(launch.env),
  });
  add(grants, "read", ...access.read);
  add(grants, "write", ...access.write);
}

/**
 * Whether one of `plugins` may register the dataset `id`: a remote plugin, one that cannot be
 * read, or one whose own local modules (the plugin files and the modules of their import graphs
 * outside the framework) name `id` in quotes. A recipe without plugins names an unknown type.
 */
async function mayRegister(
  plugins: string[],
  id: string,
  launch: LaunchEnvironment,
  graphFiles: Set<string>,
): Promise<boolean> {
  const files = new Set<string>();
  for (const spec of plugins) {
    if (isUrlLike(spec) && !spec.startsWith("file:")) return true;
    files.add(spec.startsWith("file:") ? fileURLToPath(spec) : resolve(launch.cwd, spec));
  }
  const framework = launch.frameworkDir.startsWith("/") ? launch.frameworkDir : undefined;
  for (const file of graphFiles) {
    if (framework !== undefined && !relative(framework, file).startsWith("..")) continue;
    if (launch.npmCache && !relative(launch.npmCache, file).startsWith("..")) continue;
    files.add(file);
  }
  const quoted = [`"${id}"`, `'${id}'`, `\`${id}\``];
  for (const file of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      return true; // cannot tell
    }
    if (quoted.some((q) => text.includes(q))) return true;
  }
  return false;
}

/** What a run with `args` needs, plus what `--grant` adds; `notes` says what it cannot know. */
export interface LaunchPlan {
  grants: Grants;
  notes: string[];
  /** The read grants that are modules of the plugins' import graphs (summed up in the log). */
  graphFiles?: string[];
  /** A recipe may use WebGPU (backend `webgpu` or `auto`): the child gets `--unstable-webgpu`. */
  webgpu?: boolean;
}

/**
 * Work out the permissions of `app/cli.ts run <args>` from the recipes (or the run directory of
 * `--resume`) without importing any plugin module.
 *
 * @throws {UserError} For a recipe that cannot be loaded (the same message as the run's).
 */
export async function planLaunch(args: LaunchArgs, launch: LaunchEnvironment): Promise<LaunchPlan> {
  const plan = new Planner(launch);
  const { grants } = plan;
  const set = setOverrides(args);

  if (args.resume !== undefined) {
    const dir = resolve(launch.cwd, args.resume);
    add(grants, "read", dir);
    add(grants, "write", dir);
    const info = await plan.runInfo(dir);
    if (info.recipe) add(grants, "read", info.recipe);
    await plan.runRecipe(dir, set, info.baseDir ?? dir);
  } else {
    if (args.recipes.length === 0) {
      throw new UserError("run needs a recipe file (or --resume DIR)");
    }
    for (const file of args.recipes) {
      const loaded = await loadRecipe(file, { set, env: plan.env, cwd: launch.cwd });
      add(grants, "read", ...loaded.files);
      await plan.recipe(loaded.recipe, dirname(loaded.file));
      const out = resolve(launch.cwd, args.out ?? loaded.recipe.output.dir);
      add(grants, "read", out);
      add(grants, "write", out);
    }
  }
  const several = args.recipes.length > 1 || args.seeds !== undefined ||
    args.jobs !== undefined;
  if (several && args.jobs !== undefined && Number(args.jobs) > 1) {
    add(grants, "run", "deno");
    add(grants, "env", PERMISSIONS_ENV);
  }
  return plan.finish(args.grant);
}

/** The arguments of `eval` (those of `app/cli.ts eval`, plus `--grant`). */
export interface EvalArgs {
  runDir: string;
  set: string[];
  data?: string;
  export?: string;
  grant: string[];
}

/** Parse the arguments of `eval` as `app/cli.ts eval` does (plus `--grant`). */
export function parseEvalArgs(args: string[]): EvalArgs {
  let parsed: EvalArgs | undefined;
  const program = commandParser(EVAL_COMMAND)
    .action((runDir: string | undefined, opts: Omit<EvalArgs, "runDir">) => {
      parsed = { ...opts, runDir: runDir ?? "" };
    });
  return parseWith(program, args, () => parsed!);
}

/**
 * Work out the permissions of `app/cli.ts eval <args>`: read the run directory, the dataset (the
 * run's, or the one `--data` names) and its cache, write the `--export` folder and the cache.
 */
export async function planEval(args: EvalArgs, launch: LaunchEnvironment): Promise<LaunchPlan> {
  const plan = new Planner(launch);
  const { grants } = plan;
  if (args.runDir === "") throw new UserError("eval needs a run directory");
  const dir = resolve(launch.cwd, args.runDir);
  add(grants, "read", dir);
  const set = [...args.set];
  if (args.data !== undefined) {
    const data = resolve(launch.cwd, args.data);
    add(grants, "read", data);
    try {
      const files: string[] = [];
      set.unshift(await datasetOverride(data, { env: plan.env, files }));
      add(grants, "read", ...files);
    } catch (error) {
      if (!(error instanceof UserError)) throw error; // the evaluation reports it
    }
  }
  const info = await plan.runInfo(dir);
  await plan.runRecipe(dir, set, info.baseDir ?? dir);
  if (args.export !== undefined) {
    const out = resolve(launch.cwd, args.export);
    add(grants, "read", out);
    add(grants, "write", out);
  }
  return plan.finish(args.grant);
}

/** The arguments of `predict` (those of `app/cli.ts predict`, plus `--grant`). */
export interface PredictArgs {
  runDir: string;
  inputs: string[];
  out?: string;
  backend?: string;
  grant: string[];
}

/** Parse the arguments of `predict` as `app/cli.ts predict` does (plus `--grant`). */
export function parsePredictArgs(args: string[]): PredictArgs {
  let parsed: PredictArgs | undefined;
  const program = commandParser(PREDICT_COMMAND)
    .action((runDir: string | undefined, inputs: string[], opts: Omit<PredictArgs, "runDir">) => {
      parsed = { ...opts, runDir: runDir ?? "", inputs };
    });
  return parseWith(program, args, () => parsed!);
}

/**
 * The files a scan given to `predict` is read from: the file (or folder) itself, and for a
 * MetaImage header the data file it names (`ElementDataFile`; its folder for a `LIST` or a
 * slice pattern).
 */
export async function scanFiles(path: string): Promise<string[]> {
  if (!/\.mhd$/i.test(path)) return [path];
  let head: string;
  try {
    const file = await Deno.open(path);
    try {
      const buffer = new Uint8Array(65536);
      const n = await file.read(buffer);
      head = new TextDecoder("latin1").decode(buffer.subarray(0, n ?? 0));
    } finally {
      file.close();
    }
  } catch {
    return [path]; // predict reports it
  }
  const m = /^\s*ElementDataFile\s*=\s*(.*?)\s*$/im.exec(head);
  if (!m || m[1].toUpperCase() === "LOCAL") return [path];
  const data = m[1].split(/\s+/)[0];
  if (m[1].toUpperCase().startsWith("LIST") || m[1].includes("%") || /\s/.test(m[1])) {
    return [path, dirname(path)];
  }
  return [path, resolve(dirname(path), data)];
}

/**
 * Work out the permissions of `app/cli.ts predict <args>`: read the run directory and the
 * scans (files and folders, a MetaImage header's data file), write `--out`; the run's plugin
 * modules and backend as for `run`, but no dataset.
 */
export async function planPredict(
  args: PredictArgs,
  launch: LaunchEnvironment,
): Promise<LaunchPlan> {
  const plan = new Planner(launch);
  const { grants } = plan;
  if (args.runDir === "") throw new UserError("predict needs a run directory");
  const dir = resolve(launch.cwd, args.runDir);
  add(grants, "read", dir);
  for (const input of args.inputs) {
    add(grants, "read", ...await scanFiles(resolve(launch.cwd, input)));
  }
  if (args.out !== undefined) {
    const out = resolve(launch.cwd, args.out);
    add(grants, "read", out);
    add(grants, "write", out);
  }
  const info = await plan.runInfo(dir);
  // an unknown backend is left to the CLI, which names it (through the recipe's schema)
  const set = args.backend !== undefined ? [`backend=${args.backend}`] : [];
  await plan.runRecipe(dir, set, info.baseDir ?? dir, false);
  return plan.finish(args.grant);
}

/** The grants being worked out, and the variables the recipes looked up. */
class Planner {
  readonly grants: Grants = {};
  readonly notes: string[] = [];
  readonly graphFiles = new Set<string>();
  /** Whether a recipe's backend is `webgpu` or `auto`. */
  webgpu = false;
  readonly #recorded = new Set<string>();
  readonly #launch: LaunchEnvironment;

  constructor(launch: LaunchEnvironment) {
    registerBuiltins();
    this.#launch = launch;
    // Deno loads the framework's own modules without a read grant; only a framework imported
    // by URL needs its host.
    if (launch.frameworkDir.startsWith("http:") || launch.frameworkDir.startsWith("https:")) {
      add(this.grants, "import", new URL(launch.frameworkDir).host);
    }
    if (launch.npmCache) add(this.grants, "read", launch.npmCache);
    // with "nodeModulesDir", npm packages (and tfjs's .wasm files) live in a node_modules folder
    for (const dir of launch.nodeModules ?? []) add(this.grants, "read", dir);
  }

  /** Environment lookup for recipes, recording each name. */
  readonly env = (name: string): string | undefined => {
    this.#recorded.add(name);
    return this.#launch.env(name);
  };

  /** A loaded recipe's plugins, backend and (unless `withData` is false) dataset. */
  async recipe(recipe: Recipe, baseDir: string, withData = true): Promise<void> {
    if (recipe.backend === "webgpu" || recipe.backend === "auto") this.webgpu = true;
    await recipeGrants(
      this.grants,
      recipe,
      baseDir,
      this.#launch,
      this.notes,
      this.graphFiles,
      withData,
    );
  }

  /** `run.json` of a run directory (empty when missing: the command reports that). */
  async runInfo(dir: string): Promise<{ baseDir?: string; recipe?: string | null }> {
    return await new RunDir(dir).readInfo() ?? {};
  }

  /** The recipe of a run directory (when it cannot be loaded the command reports why). */
  async runRecipe(dir: string, set: string[], baseDir: string, withData = true): Promise<void> {
    try {
      const loaded = await loadRecipe(new RunDir(dir).file("recipe"), {
        set,
        env: this.env,
        cwd: this.#launch.cwd,
      });
      await this.recipe(loaded.recipe, baseDir, withData);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
    }
  }

  /** Add the base variables and the user's `--grant`s. */
  finish(grantSpecs: string[]): LaunchPlan {
    const { grants } = this;
    add(grants, "env", ...this.#recorded, ...BASE_ENV);
    const extra = parseGrants(grantSpecs);
    for (const kind of GRANT_KINDS) {
      const value = extra[kind];
      if (value === true) grants[kind] = true;
      else if (value) {
        add(
          grants,
          kind,
          ...value.map((v) => pathLike(kind) ? resolve(this.#launch.cwd, v) : v),
        );
      }
    }
    return {
      grants,
      notes: this.notes,
      graphFiles: [...this.graphFiles],
      webgpu: this.webgpu,
    };
  }
}

function pathLike(kind: GrantKind): boolean {
  return kind === "read" || kind === "write" || kind === "ffi";
}

/**
 * Deno permission flags for `grants` (`--no-prompt` first: a missing permission is an error,
 * never a question).
 *
 * @throws {UserError} For a value with a comma, which Deno's flag syntax cannot carry.
 */
export function grantFlags(grants: Grants): string[] {
  const flags = ["--no-prompt"];
  // Without an --allow-import list Deno 2 still imports from a default list of hosts
  // (deno.land, jsr.io, esm.sh, ...): no remote plugin means no remote module at all.
  const imports = grants.import;
  if (imports === undefined || (imports !== true && imports.length === 0)) {
    flags.push("--no-remote");
  }
  for (const kind of GRANT_KINDS) {
    const value = grants[kind];
    if (value === undefined) continue;
    if (value === true) {
      flags.push(`--allow-${kind}`);
      continue;
    }
    if (value.length === 0) continue;
    for (const v of value) {
      if (v.includes(",")) {
        throw new UserError(
          `Cannot grant ${kind} "${v}": Deno's permission flags cannot carry a comma; rename it ` +
            `or run deno run <your flags> app/cli.ts run ... directly`,
        );
      }
    }
    flags.push(`--allow-${kind}=${value.join(",")}`);
  }
  return flags;
}

/**
 * The variables the launcher adds to the child's environment: the permission flags for `--jobs`
 * children, and, where the run may use WebGPU and `XDG_RUNTIME_DIR` is unset, that variable set to
 * the temporary folder. Mesa's Vulkan drivers print "Error: XDG_RUNTIME_DIR is invalid or not set"
 * on every adapter request without it (the adapter is found either way), which read as a failure on
 * the first screen of every `auto` run on a machine with Mesa installed.
 */
export function childEnvironment(
  plan: LaunchPlan,
  flags: string[],
  env: (name: string) => string | undefined,
  tmpDir: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (plan.grants.run) out[PERMISSIONS_ENV] = JSON.stringify(flags);
  if (plan.webgpu && !env("XDG_RUNTIME_DIR")) out.XDG_RUNTIME_DIR = tmpDir;
  return out;
}

/** The flags of a plan: its permission flags, and `--unstable-webgpu` where it may use WebGPU. */
export function planFlags(plan: LaunchPlan): string[] {
  return [...grantFlags(plan.grants), ...(plan.webgpu ? ["--unstable-webgpu"] : [])];
}

/**
 * One line per kind, for the log: what the run is granted. The read grants in `graphFiles`
 * (the modules a plugin imports) are counted rather than listed; `webgpu` adds that the run
 * gets WebGPU (`--unstable-webgpu`).
 */
export function describeGrants(
  grants: Grants,
  command = "run",
  graphFiles: string[] = [],
  webgpu = false,
): string {
  const parts: string[] = [];
  const summed = new Set(graphFiles);
  for (const kind of GRANT_KINDS) {
    const value = grants[kind];
    if (value === true) parts.push(`${kind}: all`);
    else if (value?.length) {
      const shown = kind === "read" ? value.filter((v) => !summed.has(v)) : value;
      const hidden = value.length - shown.length;
      parts.push(
        `${kind}: ${shown.join(", ")}` +
          (hidden ? `, and the ${hidden} local modules the plugins import` : ""),
      );
    }
  }
  const none = GRANT_KINDS.filter((k) =>
    grants[k] === undefined || (grants[k] as string[]).length === 0
  );
  if (webgpu) parts.push("webgpu: yes (--unstable-webgpu, for backend webgpu / auto)");
  return `permissions of this ${command} (deno task ${command}): ${parts.join("; ")}` +
    (none.length ? `; none of ${none.join(", ")}` : "");
}

/** Drop `--grant X` / `--grant=X` from `args` (the child's CLI does not know it). */
export function withoutGrants(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (args[i] === "--grant") {
      i++;
      continue;
    }
    if (args[i].startsWith("--grant=")) continue;
    out.push(args[i]);
  }
  return out;
}

function existingFolders(paths: string[]): string[] {
  return [...new Set(paths)].filter((p) => {
    try {
      return Deno.statSync(p).isDirectory;
    } catch {
      return false;
    }
  });
}

/** Deno's npm cache folder, from `deno info --json`, or `undefined`. */
export async function npmCacheDir(deno: string = Deno.execPath()): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(deno, {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    if (!out.success) return undefined;
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { npmCache?: string };
    return info.npmCache;
  } catch {
    return undefined;
  }
}

/**
 * The folder the user typed the command in: `INIT_CWD`, which `deno task` sets (it runs tasks in
 * the project's folder), else the working directory.
 */
export function userCwd(env: (name: string) => string | undefined): string {
  const init = env("INIT_CWD");
  if (init && isAbsolute(init)) {
    try {
      if (Deno.statSync(init).isDirectory) return init;
    } catch {
      // gone: fall through
    }
  }
  return Deno.cwd();
}

/** Options of {@linkcode launch}. */
export interface LaunchOptions {
  /**
   * The folder relative paths are resolved against and the command runs in. @default
   * {@linkcode userCwd} (`mi-ssl` passes its working directory)
   */
  cwd?: string;
}

/**
 * `deno task run ...` / `deno task eval ...` (`args` starts with the command): plan the
 * permissions, then run `app/cli.ts <command>` with them, forwarding SIGINT / SIGTERM; returns the
 * child's exit code.
 */
export async function launch(args: string[], options: LaunchOptions = {}): Promise<number> {
  const [command, ...rest] = args;
  if (command !== "run" && command !== "eval" && command !== "predict") {
    throw new UserError(`the launcher runs "run", "eval" or "predict", not "${command ?? ""}"`);
  }
  const help = rest.includes("-h") || rest.includes("--help");
  const deno = await runnableDeno() ?? "deno";
  const cli = cliPath();
  const env = (name: string) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  };
  // Relative paths on the command line are the user's: deno task runs a task in the project's
  // folder and passes the folder the command was typed in as INIT_CWD.
  const cwd = options.cwd ?? userCwd(env);
  const environment: LaunchEnvironment = {
    cwd,
    // the repository root (cli.ts is in app/)
    frameworkDir: cli.startsWith("/") ? dirname(dirname(cli)) : new URL("..", cli).href,
    npmCache: await npmCacheDir(deno),
    tmpDir: env("TMPDIR") || "/tmp",
    env,
    nodeModules: existingFolders([
      resolve(Deno.cwd(), "node_modules"),
      ...(cli.startsWith("/") ? [resolve(dirname(cli), "..", "node_modules")] : []),
    ]),
    nativeBackend: nodeBindingInstalled("tensorflow") || nodeBindingInstalled("tensorflow-gpu"),
    moduleGraph: (specifier) => moduleGraph(specifier, deno),
  };
  const plan: LaunchPlan = help
    ? { grants: {}, notes: [] }
    : command === "run"
    ? await planLaunch(parseLaunchArgs(rest), environment)
    : command === "eval"
    ? await planEval(parseEvalArgs(rest), environment)
    : await planPredict(parsePredictArgs(rest), environment);
  const flags = planFlags(plan);
  if (!help) console.error(describeGrants(plan.grants, command, plan.graphFiles, plan.webgpu));
  for (const note of plan.notes) console.error(`note: ${note}`);
  const childEnv = childEnvironment(plan, flags, env, environment.tmpDir);
  const root = frameworkDir();
  const commit = root === null ? null : await gitCommit(root);
  if (commit !== null) childEnv[COMMIT_ENV] = commit;
  const child = new Deno.Command(deno, {
    args: ["run", ...flags, cli, command, ...(help ? ["--help"] : withoutGrants(rest))],
    cwd,
    env: childEnv,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const forward = (signal: "SIGINT" | "SIGTERM") => () => {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    return (await child.status).code;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await launch(Deno.args));
  } catch (error) {
    if (error instanceof UserError) {
      console.error(`error: ${error.message}`);
      Deno.exit(2);
    }
    throw error;
  }
}
