/**
 * Errors the user can fix (bad recipe, missing file, unknown plugin id): {@linkcode UserError},
 * defined in the root's `errors.ts` so that io/ and runtime/ can throw it without importing
 * core/, and the trainer's own: a non-finite loss, an interrupted run.
 *
 * @module
 */
import { UserError } from "../errors.ts";

export { UserError };

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
