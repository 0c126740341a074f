/**
 * A minimal WebAssembly assembler: enough of the binary format to build, at run time, a module
 * of SIMD compute kernels that imports the tfjs wasm backend's memory and works on its tensors
 * in place. Only the instructions the kernels use are here.
 *
 * ```ts
 * import { Fn, buildModule } from "./wasm_asm.ts";
 * const [f, [X, N]] = Fn.kernel(2);
 * // ... f.get(X) ... f.for(i, N, 1, () => ...) ...
 * const bytes = buildModule({ memory: { shared: false }, functions: [{ name: "f", fn: f }] });
 * ```
 *
 * @module
 */

/** Value types. */
export type ValType = "i32" | "f32" | "f64" | "v128";

const TYPE_CODE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

function uleb(n: number, out: number[]): void {
  n >>>= 0;
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
}

function sleb(n: number, out: number[]): void {
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

/** A function body under construction; locals are numbered after the parameters. */
export class Fn {
  readonly params: ValType[];
  readonly results: ValType[];
  readonly locals: ValType[] = [];
  readonly code: number[] = [];

  constructor(params: ValType[], results: ValType[] = []) {
    this.params = params;
    this.results = results;
  }

  /**
   * A function of `n` i32 parameters and no result, the signature of every kernel (addresses,
   * sizes, flags), with the parameters' indices `0 .. n - 1` to name them by destructuring:
   * `const [f, [X, OUT, N]] = Fn.kernel(3)`.
   */
  static kernel(n: number): [Fn, number[]] {
    const f = new Fn(Array.from({ length: n }, () => "i32"));
    return [f, Array.from({ length: n }, (_, i) => i)];
  }

  /** A new local of type `t`; returns its index. */
  local(t: ValType): number {
    this.locals.push(t);
    return this.params.length + this.locals.length - 1;
  }

  #op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  #simd(op: number): this {
    this.code.push(0xfd);
    uleb(op, this.code);
    return this;
  }

  #mem(op: number[], align: number, offset: number): this {
    this.code.push(...op);
    uleb(align, this.code);
    uleb(offset, this.code);
    return this;
  }

  // control
  block(): this {
    return this.#op(0x02, 0x40);
  }
  loop(): this {
    return this.#op(0x03, 0x40);
  }
  if(): this {
    return this.#op(0x04, 0x40);
  }
  else(): this {
    return this.#op(0x05);
  }
  end(): this {
    return this.#op(0x0b);
  }
  br(depth: number): this {
    this.code.push(0x0c);
    uleb(depth, this.code);
    return this;
  }
  brIf(depth: number): this {
    this.code.push(0x0d);
    uleb(depth, this.code);
    return this;
  }
  /**
   * `for (; i < end; i += step) body()` on the i32 locals `i` and `end` (signed; the caller sets
   * `i` first). See {@linkcode Fn.forUntil}.
   */
  for(i: number, end: number, step: number | (() => void), body: () => void): this {
    return this.forUntil(i, () => this.get(i).get(end).i32GeS(), step, body);
  }
  /** `for (; i <= last; i += step) body()`, as {@linkcode Fn.for}. */
  forTo(i: number, last: number, step: number, body: () => void): this {
    return this.forUntil(i, () => this.get(i).get(last).i32GtS(), step, body);
  }
  /**
   * The counted loop of every kernel: `for (; !done; i += step) body()`, where `done()` pushes
   * the i32 that ends the loop when it is not zero, as `block loop (br_if 1 done) body
   * (i += step) (br 0) end end`. `step` may be a function that emits the update of `i` instead.
   */
  forUntil(i: number, done: () => void, step: number | (() => void), body: () => void): this {
    this.block().loop();
    done();
    this.brIf(1);
    body();
    if (typeof step === "number") this.get(i).i32(step).i32Add().set(i);
    else step();
    return this.br(0).end().end();
  }
  select(): this {
    return this.#op(0x1b);
  }
  drop(): this {
    return this.#op(0x1a);
  }
  /** Call function `index` of the module (its position in `buildModule`'s list). */
  call(index: number): this {
    this.code.push(0x10);
    uleb(index, this.code);
    return this;
  }

  // locals
  get(i: number): this {
    this.code.push(0x20);
    uleb(i, this.code);
    return this;
  }
  set(i: number): this {
    this.code.push(0x21);
    uleb(i, this.code);
    return this;
  }
  tee(i: number): this {
    this.code.push(0x22);
    uleb(i, this.code);
    return this;
  }

  // i32
  i32(n: number): this {
    this.code.push(0x41);
    sleb(n, this.code);
    return this;
  }
  i32Eqz(): this {
    return this.#op(0x45);
  }
  i32Eq(): this {
    return this.#op(0x46);
  }
  i32Ne(): this {
    return this.#op(0x47);
  }
  i32LtS(): this {
    return this.#op(0x48);
  }
  i32LtU(): this {
    return this.#op(0x49);
  }
  i32GtS(): this {
    return this.#op(0x4a);
  }
  i32GeS(): this {
    return this.#op(0x4e);
  }
  i32GeU(): this {
    return this.#op(0x4f);
  }
  i32Add(): this {
    return this.#op(0x6a);
  }
  i32Sub(): this {
    return this.#op(0x6b);
  }
  i32Mul(): this {
    return this.#op(0x6c);
  }
  i32Shl(): this {
    return this.#op(0x74);
  }
  i32DivU(): this {
    return this.#op(0x6e);
  }
  i32RemU(): this {
    return this.#op(0x70);
  }
  i32ShrU(): this {
    return this.#op(0x76);
  }
  i32And(): this {
    return this.#op(0x71);
  }
  i32Load(offset = 0): this {
    return this.#mem([0x28], 2, offset);
  }
  i32Store(offset = 0): this {
    return this.#mem([0x36], 2, offset);
  }

  // f32 / f64 scalars
  f32(x: number): this {
    this.code.push(0x43);
    const b = new Uint8Array(new Float32Array([x]).buffer);
    this.code.push(...b);
    return this;
  }
  f32Load(offset = 0): this {
    return this.#mem([0x2a], 2, offset);
  }
  f32Store(offset = 0): this {
    return this.#mem([0x38], 2, offset);
  }
  f32Add(): this {
    return this.#op(0x92);
  }
  f32Sub(): this {
    return this.#op(0x93);
  }
  f32Mul(): this {
    return this.#op(0x94);
  }
  f32Max(): this {
    return this.#op(0x97);
  }
  f32Gt(): this {
    return this.#op(0x5e);
  }
  f32Ge(): this {
    return this.#op(0x60);
  }
  /** Store the low byte of an i32. */
  i32Store8(offset = 0): this {
    return this.#mem([0x3a], 0, offset);
  }
  f64Load(offset = 0): this {
    return this.#mem([0x2b], 3, offset);
  }
  f64Store(offset = 0): this {
    return this.#mem([0x39], 3, offset);
  }

  // v128
  v128Load(offset = 0): this {
    return this.#mem([0xfd, 0x00], 4, offset);
  }
  v128Store(offset = 0): this {
    return this.#mem([0xfd, 0x0b], 4, offset);
  }
  /** Load one f32 and splat it to four lanes. */
  v128Load32Splat(offset = 0): this {
    return this.#mem([0xfd, 0x09], 2, offset);
  }
  /** Load two f32 and widen... not used: kept minimal. */
  v128Const0(): this {
    this.code.push(0xfd, 0x0c);
    for (let i = 0; i < 16; i++) this.code.push(0);
    return this;
  }
  f32x4Splat(): this {
    return this.#simd(0x13);
  }
  i32x4Splat(): this {
    return this.#simd(0x11);
  }
  /** Lanes `lanes[i]` (bytes 0-15 of the first operand, 16-31 of the second). */
  i8x16Shuffle(lanes: number[]): this {
    if (lanes.length !== 16) throw new Error("i8x16.shuffle takes 16 lane indices");
    this.#simd(0x0d);
    this.code.push(...lanes);
    return this;
  }
  /** Bytes of float lanes `l0..l3` (0-3 the first operand, 4-7 the second) for `i8x16Shuffle`. */
  static floatLanes(l: [number, number, number, number]): number[] {
    return l.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]);
  }
  f32x4Lt(): this {
    return this.#simd(0x43);
  }
  f32x4Ge(): this {
    return this.#simd(0x46);
  }
  /** `(a & m) | (b & ~m)` (stack: a, b, m). */
  v128Bitselect(): this {
    return this.#simd(0x52);
  }
  f32x4Nearest(): this {
    return this.#simd(0x6a);
  }
  i32x4Shl(): this {
    return this.#simd(0xab);
  }
  i32x4ShrU(): this {
    return this.#simd(0xad);
  }
  i32x4Add(): this {
    return this.#simd(0xae);
  }
  i32x4Sub(): this {
    return this.#simd(0xb1);
  }
  f32x4Min(): this {
    return this.#simd(0xe8);
  }
  i32x4TruncSatF32x4S(): this {
    return this.#simd(0xf8);
  }
  f32x4ConvertI32x4S(): this {
    return this.#simd(0xfa);
  }
  f32x4ExtractLane(lane: number): this {
    this.#simd(0x1f);
    this.code.push(lane);
    return this;
  }
  f32x4Gt(): this {
    return this.#simd(0x44);
  }
  f32x4Eq(): this {
    return this.#simd(0x41);
  }
  /** `a & ~b` (stack: a, b). */
  v128AndNot(): this {
    return this.#simd(0x4f);
  }
  v128Or(): this {
    return this.#simd(0x50);
  }
  v128And(): this {
    return this.#simd(0x4e);
  }
  f32x4Add(): this {
    return this.#simd(0xe4);
  }
  f32x4Sub(): this {
    return this.#simd(0xe5);
  }
  f32x4Mul(): this {
    return this.#simd(0xe6);
  }
  f32x4Div(): this {
    return this.#simd(0xe7);
  }
  f32x4Max(): this {
    return this.#simd(0xe9);
  }
  f32x4Sqrt(): this {
    return this.#simd(0xe3);
  }
  /** Relaxed fused multiply-add `a * b + c` (stack: a, b, c). */
  f32x4RelaxedMadd(): this {
    return this.#simd(0x105);
  }
  f64x2Add(): this {
    return this.#simd(0xf0);
  }
  /** The low two f32 lanes as f64. */
  f64x2PromoteLowF32x4(): this {
    return this.#simd(0x5f);
  }
  /** Swap the lane pairs: `[c, d, a, b]` of `[a, b, c, d]` (i8x16.shuffle of one vector). */
  v128SwapHalves(): this {
    // shuffle needs two operands: the caller pushes the vector twice.
    this.code.push(0xfd, 0x0d);
    for (let i = 8; i < 16; i++) this.code.push(i);
    for (let i = 0; i < 8; i++) this.code.push(i);
    return this;
  }
}

/** `acc = a * b + acc` on v128 locals: a fused multiply-add with `fma`, else multiply then add. */
export function madd(f: Fn, fma: boolean, a: number, b: number, acc: number): void {
  if (fma) f.get(a).get(b).get(acc).f32x4RelaxedMadd().set(acc);
  else f.get(a).get(b).f32x4Mul().get(acc).f32x4Add().set(acc);
}

/**
 * The v128 locals of a GEMM register tile of `rows` by 8 floats, the layout the convolution and
 * Winograd products share: row `r` in `acc[2 r]` (floats 0-3) and `acc[2 r + 1]` (4-7), `b0` and
 * `b1` one row of the right operand, `a` one float of the left operand splat to four lanes.
 */
export class Tile8 {
  readonly acc: number[];
  readonly b0: number;
  readonly b1: number;
  readonly a: number;
  readonly #f: Fn;
  readonly #fma: boolean;

  /** Allocates the tile's locals in `f` (`acc`, then `b0`, `b1`, `a`). */
  constructor(f: Fn, rows: number, fma: boolean) {
    this.#f = f;
    this.#fma = fma;
    this.acc = Array.from({ length: 2 * rows }, () => f.local("v128"));
    this.b0 = f.local("v128");
    this.b1 = f.local("v128");
    this.a = f.local("v128");
  }

  /** Sets every accumulator to zero. */
  zero(): void {
    for (let r = 0; r < this.acc.length / 2; r++) this.zeroRow(r);
  }

  /** Sets row `r` to zero. */
  zeroRow(r: number): void {
    this.#f.v128Const0().set(this.acc[2 * r]).v128Const0().set(this.acc[2 * r + 1]);
  }

  /**
   * One rank-1 update: `b0`, `b1` = the 8 floats at byte `offset` of the address in local `b`;
   * then, for each row `r`, `splatA(r)` pushes its left operand (a v128) and `acc` row `r` +=
   * `a * (b0, b1)`.
   */
  update(b: number, offset: number, splatA: (r: number) => void): void {
    const f = this.#f;
    f.get(b).v128Load(offset).set(this.b0);
    f.get(b).v128Load(offset + 16).set(this.b1);
    for (let r = 0; r < this.acc.length / 2; r++) {
      splatA(r);
      f.set(this.a);
      madd(f, this.#fma, this.a, this.b0, this.acc[2 * r]);
      madd(f, this.#fma, this.a, this.b1, this.acc[2 * r + 1]);
    }
  }

  /** `for (nb = 0; 8 nb < co; nb++) body()`: the blocks of 8 of `co` output channels. */
  forBlocks(nb: number, co: number, body: () => void): void {
    const f = this.#f;
    f.i32(0).set(nb);
    f.forUntil(nb, () => f.get(nb).i32(3).i32Shl().get(co).i32GeS(), 1, body);
  }

  /** Row `r` = the 8 floats at the address `address()` pushes (it is called twice). */
  loadRow(r: number, address: () => void): void {
    address();
    this.#f.v128Load(0).set(this.acc[2 * r]);
    address();
    this.#f.v128Load(16).set(this.acc[2 * r + 1]);
  }

  /** Stores row `r` at the address `address()` pushes (it is called twice). */
  storeRow(r: number, address: () => void): void {
    address();
    this.#f.get(this.acc[2 * r]).v128Store(0);
    address();
    this.#f.get(this.acc[2 * r + 1]).v128Store(16);
  }

  /** Every row `r` from the address `base + r * stride` (`base`, `stride` i32 locals). */
  loadRows(base: number, stride: number): void {
    for (let r = 0; r < this.acc.length / 2; r++) {
      this.loadRow(r, () => this.#f.get(base).get(stride).i32(r).i32Mul().i32Add());
    }
  }

  /** Stores every row `r` at `base + r * stride` (`base`, `stride` i32 locals). */
  storeRows(base: number, stride: number): void {
    for (let r = 0; r < this.acc.length / 2; r++) {
      this.storeRow(r, () => this.#f.get(base).get(stride).i32(r).i32Mul().i32Add());
    }
  }
}

/** A function of a module, exported under `name`. */
export interface ModuleFunction {
  name: string;
  fn: Fn;
}

/** Pages of the largest 32-bit memory (4 GiB). */
export const MAX_PAGES = 65536;

/** Memories that cannot grow, with their size in pages (see {@linkcode markFixedSize}). */
const fixedSize = new WeakMap<WebAssembly.Memory, number>();

/** Record that `memory` was made with `initial = maximum = pages` (it cannot grow). */
export function markFixedSize(memory: WebAssembly.Memory, pages: number): void {
  fixedSize.set(memory, pages);
}

/**
 * Whether `memory` is shared. A browser page that is not cross-origin isolated has no
 * `SharedArrayBuffer` at all (and so no shared memory): naming it there would throw.
 */
export function isShared(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
}

/**
 * How a kernel module declares the memory it imports: shared or not, and for a shared memory that
 * cannot grow ({@linkcode markFixedSize}), its size as both minimum and maximum. V8 without a
 * trap handler (Deno) checks every access against the memory's size, and reloads the size
 * before each access to a shared memory that may grow (another thread may grow it); for a module
 * whose memory cannot grow it compares against a constant, as fast as for an unshared memory
 * (docs/performance.md).
 */
export function memoryImport(memory: WebAssembly.Memory): { shared: boolean; pages?: number } {
  const shared = isShared(memory);
  const pages = fixedSize.get(memory);
  return shared && pages !== undefined ? { shared, pages } : { shared };
}

/** Build the bytes of a module with one imported memory (`env.memory`) and `functions`. */
export function buildModule(spec: {
  memory: { shared: boolean; pages?: number };
  functions: ModuleFunction[];
}): Uint8Array {
  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const section = (id: number, body: number[]) => {
    out.push(id);
    uleb(body.length, out);
    out.push(...body);
  };
  const name = (s: string, into: number[]) => {
    const b = new TextEncoder().encode(s);
    uleb(b.length, into);
    into.push(...b);
  };
  // types: one per function
  const types: number[] = [];
  uleb(spec.functions.length, types);
  for (const { fn } of spec.functions) {
    types.push(0x60);
    uleb(fn.params.length, types);
    for (const p of fn.params) types.push(TYPE_CODE[p]);
    uleb(fn.results.length, types);
    for (const r of fn.results) types.push(TYPE_CODE[r]);
  }
  section(1, types);
  // import env.memory
  const imports: number[] = [];
  uleb(1, imports);
  name("env", imports);
  name("memory", imports);
  imports.push(0x02);
  if (spec.memory.shared) {
    imports.push(0x03);
    uleb(spec.memory.pages ?? 0, imports);
    uleb(spec.memory.pages ?? MAX_PAGES, imports);
  } else {
    imports.push(0x00);
    uleb(0, imports);
  }
  section(2, imports);
  const funcs: number[] = [];
  uleb(spec.functions.length, funcs);
  spec.functions.forEach((_, i) => uleb(i, funcs));
  section(3, funcs);
  const exports: number[] = [];
  uleb(spec.functions.length, exports);
  spec.functions.forEach(({ name: n }, i) => {
    name(n, exports);
    exports.push(0x00);
    uleb(i, exports);
  });
  section(7, exports);
  const code: number[] = [];
  uleb(spec.functions.length, code);
  for (const { fn } of spec.functions) {
    const body: number[] = [];
    uleb(fn.locals.length, body);
    for (const t of fn.locals) {
      uleb(1, body);
      body.push(TYPE_CODE[t]);
    }
    body.push(...fn.code, 0x0b);
    uleb(body.length, code);
    code.push(...body);
  }
  section(10, code);
  return new Uint8Array(out);
}
