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

/** Options of {@linkcode Progress}. */
export interface ProgressOptions {
  /** Without a terminal: print a line every this many iterations. @default {10} */
  every?: number;
  /** Print anything at all. @default {true} */
  enabled?: boolean;
  /** Whether the output is a terminal (one line redrawn in place). @default {stderr's} */
  tty?: boolean;
  /**
   * The terminal's width in columns, asked at each update (the terminal may be resized).
   * @default {`Deno.consoleSize().columns` of standard error, else 80}
   */
  columns?: () => number;
  /** Where the text goes. @default {standard error} */
  write?: (text: string) => void;
}

/** The terminal's width: `Deno.consoleSize()` of standard error, 80 when it cannot be known. */
export function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/**
 * The progress line for a width: `[bar] done/total terms | rate it/s ETA t`. When it does not fit
 * in `columns - 1` (a full-width line would wrap on some terminals), the least important parts go
 * first: the bar narrows and then goes, then the loss terms other than the total `loss` (the last
 * first), then the rate, then `loss`; `done/total` and the ETA stay (cut only on a terminal too
 * narrow even for them).
 */
export function progressLine(
  done: number,
  total: number,
  terms: Record<string, number>,
  rate: number,
  eta: number,
  columns = Infinity,
): string {
  const limit = Math.max(columns - 1, 1);
  const loss = Object.entries(terms).filter(([k]) => k === "loss");
  const others = Object.entries(terms).filter(([k]) => k !== "loss");
  const build = (barWidth: number, kept: number, showRate: boolean, showLoss: boolean) => {
    const shown = [...(showLoss ? loss : []), ...others.slice(0, kept)];
    const t = shown.map(([k, v]) => `${k} ${fmt(v)}`).join(" ");
    const filled = Math.round((barWidth * done) / total);
    const bar = barWidth > 0 ? `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ` : "";
    return `${bar}${done}/${total}${t ? ` ${t}` : ""} |` +
      `${showRate ? ` ${rate.toFixed(2)} it/s` : ""} ETA ${formatDuration(eta)}`;
  };
  // from the fullest line to the barest, each dropping the next least important part
  const n = others.length;
  const attempts: Array<[number, number, boolean, boolean]> = [[20, n, true, true], [
    10,
    n,
    true,
    true,
  ]];
  for (let k = n; k >= 0; k--) attempts.push([0, k, true, true]);
  attempts.push([0, 0, false, true], [0, 0, false, false]);
  let line = "";
  for (const [bar, kept, showRate, showLoss] of attempts) {
    line = build(bar, kept, showRate, showLoss);
    if (line.length <= limit) return line;
  }
  return line.slice(0, limit);
}

/** A progress bar for `total` iterations. */
export class Progress {
  readonly #total: number;
  readonly #every: number;
  readonly #tty: boolean;
  readonly #start = performance.now();
  readonly #enabled: boolean;
  readonly #columns: () => number;
  readonly #out: (text: string) => void;
  #lastLen = 0;

  constructor(total: number, options: ProgressOptions = {}) {
    this.#total = total;
    this.#every = options.every ?? 10;
    this.#enabled = options.enabled ?? true;
    let tty = options.tty;
    if (tty === undefined) {
      try {
        tty = Deno.stderr.isTerminal();
      } catch {
        tty = false;
      }
    }
    this.#tty = tty;
    this.#columns = options.columns ?? terminalColumns;
    this.#out = options.write ??
      ((text: string) => Deno.stderr.writeSync(new TextEncoder().encode(text)));
  }

  /** Report that `done` iterations are finished, with the latest loss terms. */
  update(done: number, terms: Record<string, number>, done0 = 0): void {
    if (!this.#enabled) return;
    if (!this.#tty && done % this.#every !== 0 && done !== this.#total) return;
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = (done - done0) / Math.max(elapsed, 1e-9);
    const eta = (this.#total - done) / Math.max(rate, 1e-9);
    // On a terminal the line is redrawn in place, which works only while it fits on one row;
    // a log gets whole lines.
    const columns = this.#tty ? this.#columns() : Infinity;
    this.#write(progressLine(done, this.#total, terms, rate, eta, columns), columns);
  }

  /** Print a message on its own line (e.g. validation results). */
  message(line: string): void {
    if (!this.#enabled) return;
    if (this.#tty && this.#lastLen > 0) this.#out("\r" + " ".repeat(this.#lastLen) + "\r");
    this.#lastLen = 0;
    this.#out(line + "\n");
  }

  /** End the bar's line. */
  done(): void {
    if (this.#enabled && this.#tty && this.#lastLen > 0) this.#out("\n");
    this.#lastLen = 0;
  }

  #write(line: string, columns: number): void {
    if (this.#tty) {
      // blank what is left of a longer previous line, within the row
      const padded = line.padEnd(Math.min(this.#lastLen, Math.max(columns - 1, line.length)));
      this.#out("\r" + padded);
      this.#lastLen = line.length;
    } else {
      this.#out(line + "\n");
    }
  }
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4);
}
