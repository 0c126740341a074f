/**
 * `deno task bundle:web [DIR]`: build the browser page's bundle as `serve` does on first use
 * (`page_bundle.ts`: `deno bundle` of `web/app.ts` into the per-user cache, keyed by its module
 * graph), print each file's SHA-256, and with `DIR` copy the bundle and tfjs's wasm binaries
 * there. The same sources give the same bytes (`tests/serve_test.ts` builds twice and compares).
 *
 * @module
 */
import { join } from "node:path";
import { UserError } from "../core/errors.ts";
import { type PageBundle, pageBundle, sha256 } from "./page_bundle.ts";

/** Build (or reuse) the bundle; write it to `dir` when given; one line per file. */
export async function bundleWeb(dir?: string, log = console.log): Promise<PageBundle> {
  const files = await pageBundle((line) => log(line));
  if (dir !== undefined) await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    if (dir !== undefined) await Deno.writeFile(join(dir, name), bytes);
    log(`${name}  ${bytes.length} bytes  sha256 ${await sha256(bytes)}`);
  }
  return files;
}

if (import.meta.main) {
  try {
    if (Deno.args.length > 1 || Deno.args.some((a) => a.startsWith("-"))) {
      throw new UserError("usage: deno task bundle:web [DIR]");
    }
    await bundleWeb(Deno.args[0]);
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    console.error(error.message);
    Deno.exit(2);
  }
}
