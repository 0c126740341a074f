/**
 * Errors the user can fix (bad recipe, missing file, unknown plugin id). The CLI prints their
 * message alone, without a stack trace, and exits with code 2.
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

/** A loss term became NaN or infinite (`trainer.nonFinite: stop`). */
export class NonFiniteLossError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** The run stopped on SIGINT/SIGTERM after writing a checkpoint. */
export class InterruptedError extends Error {
  /** The exit code: 130 for SIGINT, 143 for SIGTERM. */
  readonly exitCode: number;
  constructor(readonly signal: "SIGINT" | "SIGTERM", message: string) {
    super(message);
    this.name = "InterruptedError";
    this.exitCode = signal === "SIGINT" ? 130 : 143;
  }
}
