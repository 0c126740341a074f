/**
 * Errors the user can fix (bad recipe, missing file, unknown plugin id). The CLI prints their
 * message alone, without a stack trace, and exits with code 2.
 *
 * A leaf below every layer (like deps.ts): io/ and runtime/ throw it too, and they import
 * nothing from core/. `core/errors.ts` re-exports it for everything above.
 *
 * @module
 */

/** An error caused by the user's input, reported as one message and exit code 2. */
export class UserError extends Error {
  /**
   * A user error with its message.
   *
   * @param message What could not be done and why, e.g.
   *   `Cannot load recipe "x.yaml": regularizers[1].weight must be a number`.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UserError";
  }
}
