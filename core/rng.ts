/**
 * A small, seedable, serialisable pseudo-random generator (sfc32), so that every random
 * choice of a run flows from one seed and a run can be resumed exactly.
 *
 * @module
 */

/** The generator's full state: four unsigned 32-bit words. */
export type RngState = [number, number, number, number];

/**
 * Seeded pseudo-random generator (sfc32, seeded through splitmix32).
 *
 * @example
 * ```ts
 * import { Rng } from "./rng.ts";
 * const rng = new Rng(42);
 * const u = rng.next(); // in [0, 1)
 * ```
 */
export class Rng {
  #a = 0;
  #b = 0;
  #c = 0;
  #d = 0;

  /**
   * A generator seeded with `seed`.
   *
   * @param seed Any integer; equal seeds give equal sequences.
   */
  constructor(seed: number) {
    let s = (seed >>> 0) ^ 0x9e3779b9;
    const mix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = mix();
    this.#b = mix();
    this.#c = mix();
    this.#d = mix();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** A uniform unsigned 32-bit integer. */
  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** A uniform number in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** A uniform number in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A standard normal number (Box-Muller). */
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Shuffle `array` in place (Fisher-Yates) and return it. */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [array[i], array[j]] = [array[j], array[i]];
    }
    return array;
  }

  /** A child generator whose sequence is independent of further draws from this one. */
  fork(): Rng {
    return new Rng(this.nextUint32());
  }

  /** The state, for checkpoints. */
  getState(): RngState {
    return [this.#a, this.#b, this.#c, this.#d];
  }

  /** Restore a state from {@linkcode Rng.getState}. */
  setState(state: RngState): void {
    [this.#a, this.#b, this.#c, this.#d] = state.map((v) => v >>> 0) as RngState;
  }
}
