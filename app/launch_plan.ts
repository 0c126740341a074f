/**
 * The permission computation behind the launcher (`app/launcher.ts`): from a loaded recipe, the
 * grants of its plugin modules (and their static import graphs), its backend and its dataset,
 * worked out without importing any plugin module; {@linkcode Planner} collects them for one
 * command. The commands themselves are planned in `app/launch_commands.ts`.
 *
 * @module
 */
import { isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CACHE_DIR_ENV, datasets, defaultCacheDir } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { COMMIT_ENV } from "../core/provenance.ts";
import { isUrlLike, loadRecipe, type Recipe } from "../core/recipe.ts";
import { RunDir } from "../core/run_dir.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { addGrant, GRANT_KINDS, grantFlags, type Grants, parseGrants, pathLike } from "./grants.ts";

/** Environment variables every run may read (besides the recipe's): see app/launcher.ts. */
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

/** The grant a module specifier needs: read for a local file, import for a remote host. */
function moduleGrant(grants: Grants, spec: string, cwd: string): void {
  if (!isUrlLike(spec)) {
    addGrant(grants, "read", isAbsolute(spec) ? spec : resolve(cwd, spec));
    return;
  }
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return; // not a URL Deno could import either: the run reports it
  }
  if (url.protocol === "file:") addGrant(grants, "read", fileURLToPath(url));
  else if (url.protocol === "http:" || url.protocol === "https:") {
    addGrant(grants, "import", url.host);
  }
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
    addGrant(grants, "read", resolve(launch.cwd, "node_modules"));
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
  addGrant(grants, "read", ...access.read);
  addGrant(grants, "write", ...access.write);
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

/** The grants being worked out, and the variables the recipes looked up. */
export class Planner {
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
      addGrant(this.grants, "import", new URL(launch.frameworkDir).host);
    }
    if (launch.npmCache) addGrant(this.grants, "read", launch.npmCache);
    // with "nodeModulesDir", npm packages (and tfjs's .wasm files) live in a node_modules folder
    for (const dir of launch.nodeModules ?? []) addGrant(this.grants, "read", dir);
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
    addGrant(grants, "env", ...this.#recorded, ...BASE_ENV);
    const extra = parseGrants(grantSpecs);
    for (const kind of GRANT_KINDS) {
      const value = extra[kind];
      if (value === true) grants[kind] = true;
      else if (value) {
        addGrant(
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

/** The flags of a plan: its permission flags, and `--unstable-webgpu` where it may use WebGPU. */
export function planFlags(plan: LaunchPlan): string[] {
  return [...grantFlags(plan.grants), ...(plan.webgpu ? ["--unstable-webgpu"] : [])];
}
