/**
 * The entry point of a task script (`tables:update`, `results:add`): run `main` on the
 * arguments; a {@linkcode UserError} ends with one line `error: ...` and exit code 2, as every
 * command does, anything else propagates.
 *
 * @module
 */
import { UserError } from "../core/errors.ts";

/** Run `main(Deno.args)`, turning a {@linkcode UserError} into `error: ...` and exit code 2. */
export async function runScript(main: (args: string[]) => Promise<void>): Promise<void> {
  try {
    await main(Deno.args);
  } catch (error) {
    if (error instanceof UserError) {
      console.error(`error: ${error.message}`);
      Deno.exit(2);
    }
    throw error;
  }
}
