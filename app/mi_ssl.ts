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
 * only, and `serve` only its `--export` folder (nothing without it).
 *
 * @module
 */
import { resolve } from "node:path";
import { UserError } from "../core/errors.ts";
import { COMMAND_LAUNCH } from "./commands.ts";
import { launch } from "./launcher.ts";
import { cliPath, runnableDeno } from "./child_deno.ts";

/**
 * The Deno flags of a non-launched subcommand started from `cli` (a path or a URL): its task's,
 * `--allow-write` narrowed to the folder for `init`, and the framework's host for a framework
 * imported by URL.
 */
export function subcommandFlags(
  command: string,
  args: string[],
  cli: string,
  cwd: string,
): string[] {
  const flags = [...COMMAND_LAUNCH[command].flags];
  if (command === "init") {
    const folder = args.find((a) => !a.startsWith("-"));
    if (folder !== undefined) {
      flags[flags.indexOf("--allow-write")] = `--allow-write=${resolve(cwd, folder)}`;
    }
  }
  if (command === "serve") {
    // `serve` writes only with --export, and only that folder
    const at = args.findIndex((a) => a === "--export" || a.startsWith("--export="));
    const folder = at < 0 ? undefined : args[at].includes("=") ? args[at].slice(9) : args[at + 1];
    const write = flags.indexOf("--allow-write");
    if (folder !== undefined) flags[write] = `--allow-write=${resolve(cwd, folder)}`;
    else flags.splice(write, 1);
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
  // Ctrl-C reaches the child (same process group); wait for it to finish
  const ignore = () => {};
  Deno.addSignalListener("SIGINT", ignore);
  try {
    return (await child.status).code;
  } finally {
    Deno.removeSignalListener("SIGINT", ignore);
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
