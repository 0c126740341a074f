/**
 * Plugin modules: a recipe's `plugins` are imported before its plugin ids are looked up; each
 * module registers its plugins when it is imported.
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** A module specifier for a plugin path (absolute or relative file path, or URL). */
export function pluginSpecifier(path: string): string {
  if (/^(https?|file|npm|jsr|data):/.test(path)) return path;
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  return new URL(`file://${abs}`).href;
}

/** Import plugin modules (each registers its plugins on import). */
export async function loadPluginModules(paths: string[]): Promise<void> {
  for (const path of paths) {
    try {
      await import(pluginSpecifier(path));
    } catch (error) {
      const message = (error as Error).message;
      // A permission error names the flag Deno would want; under deno task run the way to
      // give it is --grant (Deno reports a refused import as a TypeError, hence the text test).
      const denied = error instanceof Deno.errors.NotCapable ||
        error instanceof Deno.errors.PermissionDenied ||
        /Requires (read|import|net|env|write|run|sys|ffi) access/.test(message);
      throw new UserError(
        `Cannot load plugin module "${path}": ${message}` +
          (denied
            ? `\nUnder deno task run / eval, grant it with --grant, e.g. --grant read=<file or ` +
              `folder> or --grant import=<host> (README, "Permissions")`
            : ""),
      );
    }
  }
}
