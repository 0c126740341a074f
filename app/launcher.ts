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
import { dirname, isAbsolute, resolve } from "node:path";
import { nodeBindingInstalled } from "../runtime/backend.ts";
import { UserError } from "../core/errors.ts";
import { COMMIT_ENV, frameworkDir, gitCommit } from "../core/provenance.ts";
import { cliPath, runnableDeno } from "./sweep.ts";
import { describeGrants, withoutGrants } from "./grants.ts";
import {
  type LaunchEnvironment,
  type LaunchPlan,
  moduleGraph,
  PERMISSIONS_ENV,
  planFlags,
} from "./launch_plan.ts";
import {
  parseEvalArgs,
  parseLaunchArgs,
  parsePredictArgs,
  planEval,
  planLaunch,
  planPredict,
} from "./launch_commands.ts";

// The launcher's parts, importable from here as before they moved.
export {
  describeGrants,
  GRANT_KINDS,
  grantFlags,
  type GrantKind,
  type Grants,
  parseGrants,
  withoutGrants,
} from "./grants.ts";
export {
  BASE_ENV,
  type LaunchEnvironment,
  type LaunchPlan,
  moduleGraph,
  PERMISSIONS_ENV,
  planFlags,
} from "./launch_plan.ts";
export {
  type EvalArgs,
  type LaunchArgs,
  parseEvalArgs,
  parseLaunchArgs,
  parsePredictArgs,
  planEval,
  planLaunch,
  planPredict,
  type PredictArgs,
  scanFiles,
} from "./launch_commands.ts";

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
