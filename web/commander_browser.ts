/**
 * `commander` in the browser bundle: `deps.ts` re-exports it for the CLI, and as a CommonJS
 * package it would run (and require Node's modules) on import; the page has no command line.
 *
 * @module
 */
/** Not available in the browser. */
export class Command {}
/** Not available in the browser. */
export class CommanderError extends Error {}
/** Not available in the browser. */
export class Option {}
