/**
 * Progress reporting on standard error: a one-line bar on a terminal, a line every few
 * iterations otherwise (CI logs).
 *
 * @module
 */

/** Format seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** A progress bar for `total` iterations. */
export class Progress {
  readonly #total: number;
  readonly #every: number;
  readonly #tty: boolean;
  readonly #start = performance.now();
  readonly #enabled: boolean;
  #lastLen = 0;

  constructor(total: number, options: { every?: number; enabled?: boolean } = {}) {
    this.#total = total;
    this.#every = options.every ?? 10;
    this.#enabled = options.enabled ?? true;
    let tty = false;
    try {
      tty = Deno.stderr.isTerminal();
    } catch {
      tty = false;
    }
    this.#tty = tty;
  }

  /** Report that `done` iterations are finished, with the latest loss terms. */
  update(done: number, terms: Record<string, number>, done0 = 0): void {
    if (!this.#enabled) return;
    if (!this.#tty && done % this.#every !== 0 && done !== this.#total) return;
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = (done - done0) / Math.max(elapsed, 1e-9);
    const eta = (this.#total - done) / Math.max(rate, 1e-9);
    const width = 20;
    const filled = Math.round((width * done) / this.#total);
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    const t = Object.entries(terms).map(([k, v]) => `${k} ${fmt(v)}`).join(" ");
    const line = `[${bar}] ${done}/${this.#total} ${t} | ${rate.toFixed(2)} it/s ETA ${
      formatDuration(eta)
    }`;
    this.#write(line);
  }

  /** Print a message on its own line (e.g. validation results). */
  message(line: string): void {
    if (!this.#enabled) return;
    if (this.#tty && this.#lastLen > 0) this.#raw("\r" + " ".repeat(this.#lastLen) + "\r");
    this.#lastLen = 0;
    this.#raw(line + "\n");
  }

  /** End the bar's line. */
  done(): void {
    if (this.#enabled && this.#tty && this.#lastLen > 0) this.#raw("\n");
    this.#lastLen = 0;
  }

  #write(line: string): void {
    if (this.#tty) {
      const padded = line.padEnd(this.#lastLen);
      this.#raw("\r" + padded);
      this.#lastLen = line.length;
    } else {
      this.#raw(line + "\n");
    }
  }

  #raw(s: string): void {
    Deno.stderr.writeSync(new TextEncoder().encode(s));
  }
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4);
}
