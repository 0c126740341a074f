/** The browser page's bundle for the tests that serve it. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Build `web/dist/app.js` as `deno task bundle:web` does (its command line, from deno.json). */
export async function buildWebBundle(): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const task: string = config.tasks["bundle:web"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: task.split(" ").slice(1),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}
