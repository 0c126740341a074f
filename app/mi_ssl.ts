/**
 * `mi-ssl`, the installed command: the subcommands of the `deno task`s, run from any folder, every
 * path on the command line relative to the folder it is typed in. Install it from a checkout:
 *
 * ```sh
 * deno install --global --name mi-ssl --allow-read --allow-env --allow-run=deno app/mi_ssl.ts
 * ```
 *
 * or with this file's URL instead of `app/mi_ssl.ts`. The command itself is granted what the
 * launcher is (read, env, and starting `deno`), and reads nothing but the command line: each
 * subcommand runs in a child `deno run` with the permissions of its task
 * ({@linkcode COMMAND_LAUNCH}): `run`, `eval` and `predict` through the launcher, which grants a
 * run only what its recipe needs (docs/permissions.md); `init <folder>` may write that folder
 * only, and `serve` only its page's bundle cache (`<cache>/web`, built on first use) and its
 * `--export` folder.
 *
 * @module
 */
import { resolve } from "node:path";
import { UserError } from "../core/errors.ts";
import { COMMAND_LAUNCH } from "./commands.ts";
import { launch } from "./launcher.ts";
import { cliPath, runnableDeno } from "./child_deno.ts";
import { bundleCacheDir } from "./page_bundle.ts";

/**
 * The Deno flags of a non-launched subcommand started from `cli` (a path or a URL): its task's,
 * `--allow-write` narrowed to the folder for `init` and, for `serve`, to the page's bundle cache
 * and the `--export` folder; the framework's host for a framework imported by URL. `env` reads
 * the variables that place the cache.
 */
export function subcommandFlags(
  command: string,
  args: string[],
  cli: string,
  cwd: string,
  env?: (name: string) => string | undefined,
): string[] {
  const flags = [...COMMAND_LAUNCH[command].flags];
  if (command === "init") {
    const folder = args.find((a) => !a.startsWith("-"));
    if (folder !== undefined) {
      flags[flags.indexOf("--allow-write")] = `--allow-write=${resolve(cwd, folder)}`;
    }
  }
  if (command === "serve") {
    // `serve` writes its page's bundle into the cache (app/page_bundle.ts) and the page into
    // --export's folder, nothing else
    const at = args.findIndex((a) => a === "--export" || a.startsWith("--export="));
    const folder = at < 0 ? undefined : args[at].includes("=") ? args[at].slice(9) : args[at + 1];
    const write = [bundleCacheDir(env), folder === undefined ? null : resolve(cwd, folder)]
      .filter((p) => p !== null);
    const i = flags.indexOf("--allow-write");
    if (write.length) flags[i] = `--allow-write=${write.join(",")}`;
    else flags.splice(i, 1);
  }
  if (/^https?:/.test(cli)) flags.push(`--allow-import=${new URL(cli).host}`);
  return flags;
}

/** Run `mi-ssl <args>`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  const cwd = Deno.cwd();
  const launch_ = COMMAND_LAUNCH[command ?? ""];
  if (launch_?.script === "launcher") return await launch(args, { cwd });
  const deno = await runnableDeno() ?? "deno";
  const cli = cliPath();
  // no command, --help or an unknown command: the CLI's help or message (read only)
  const flags = launch_ ? subcommandFlags(command, rest, cli, cwd) : ["--allow-read"];
  const child = new Deno.Command(deno, {
    args: ["run", ...flags, cli, ...args],
    cwd,
    // the CLI takes INIT_CWD for the folder a `deno task` was typed in: this one
    env: { INIT_CWD: cwd },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Ctrl-C reaches the child (same process group); wait for it to finish. A SIGTERM sent to this
  // process alone (`kill <pid>`, a supervisor) is passed on, so that the child (a `serve`) does
  // not outlive it.
  const ignore = () => {};
  const forward = () => child.kill("SIGTERM");
  const term = Deno.build.os !== "windows";
  Deno.addSignalListener("SIGINT", ignore);
  if (term) Deno.addSignalListener("SIGTERM", forward);
  try {
    return (await child.status).code;
  } finally {
    Deno.removeSignalListener("SIGINT", ignore);
    if (term) Deno.removeSignalListener("SIGTERM", forward);
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    if (error instanceof UserError) {
      console.error(`error: ${error.message}`);
      Deno.exit(2);
    }
    throw error;
  }
}
