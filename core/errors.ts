/**
 * Errors the user can fix (bad recipe, missing file, unknown plugin id): {@linkcode UserError},
 * defined in the root's `errors.ts` so that io/ and runtime/ can throw it without importing
 * core/.
 *
 * @module
 */
export { UserError } from "../errors.ts";
