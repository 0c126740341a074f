/**
 * `cache`: show the dataset cache folder and its size, or empty it (only the entry folders the
 * cache writes: datasets' `<name>-<key>` and the browser page's bundles `web/<key>`).
 *
 * @module
 */
import type { Command } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { CACHE_DIR_ENV, defaultCacheDir } from "../core/dataset.ts";

/** Add `cache` to `program`. */
export function addCacheCommand(program: Command): void {
  program.command("cache")
    .description(
      `Show the dataset cache folder (${CACHE_DIR_ENV}, else $XDG_CACHE_HOME/mi-ssl or ` +
        `~/.cache/mi-ssl) and its size, or empty it`,
    )
    .option("--clear", "remove every cached dataset and the browser page's built bundles")
    .action(async (opts: { clear?: boolean }) => {
      const dir = defaultCacheDir();
      if (dir === null) {
        throw new UserError(
          `No dataset cache folder: set ${CACHE_DIR_ENV}, XDG_CACHE_HOME or HOME`,
        );
      }
      let bytes = 0, files = 0;
      const walk = async (d: string) => {
        for await (const e of Deno.readDir(d)) {
          const p = `${d}/${e.name}`;
          if (e.isDirectory) await walk(p);
          else if (e.isFile) {
            bytes += (await Deno.stat(p)).size;
            files++;
          }
        }
      };
      try {
        await walk(dir);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      const size = `${files} files, ${(bytes / 1e6).toFixed(1)} MB`;
      if (!opts.clear) {
        console.log(`dataset cache: ${dir} (${size}); deno task cache --clear empties it`);
        return;
      }
      // only what the cache writes: entry folders named <dataset>-<key hash>
      let removed = 0;
      try {
        for await (const e of Deno.readDir(dir)) {
          if (e.isDirectory && /-[0-9a-f]{16}$/.test(e.name)) {
            await Deno.remove(`${dir}/${e.name}`, { recursive: true });
            removed++;
          }
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      // the page's bundles (`serve` builds one per framework version into web/<key>; older
      // versions' stay behind otherwise), and folders an interrupted build left
      let bundles = 0;
      try {
        for await (const e of Deno.readDir(`${dir}/web`)) {
          if (e.isDirectory && /^[0-9a-f]{16}(\.tmp-.*)?$/.test(e.name)) {
            await Deno.remove(`${dir}/web/${e.name}`, { recursive: true });
            bundles++;
          }
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      console.log(
        `cleared the dataset cache ${dir}: ${removed} dataset entries, ${bundles} page bundles ` +
          `(${size})`,
      );
    });
}
