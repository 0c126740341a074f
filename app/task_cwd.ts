/**
 * The folder a `deno task` command was typed in, for the task scripts that take paths (the CLI,
 * `results:add`).
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The folder a `deno task` command was typed in: deno task runs a task in the project's folder
 * (this framework's root) and passes the folder it was typed in as `INIT_CWD`. `undefined` when
 * the process was started elsewhere (by the launcher, by `mi-ssl`, by `deno run` in another
 * folder) or may not read `INIT_CWD`: then the working directory is the user's already.
 */
export function taskCwd(): string | undefined {
  try {
    const init = Deno.env.get("INIT_CWD");
    const root = fileURLToPath(new URL("..", import.meta.url));
    if (!init || !isAbsolute(init) || resolve(Deno.cwd()) !== resolve(root)) return undefined;
    return Deno.statSync(init).isDirectory ? init : undefined;
  } catch {
    return undefined;
  }
}
