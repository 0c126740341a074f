/**
 * The error of a command some of whose items failed (each reported already): the CLI's `main`
 * turns it into exit code 1.
 *
 * @module
 */

/** Some items of a command failed (each reported already): exit code 1. */
export class PartialFailure extends Error {}
