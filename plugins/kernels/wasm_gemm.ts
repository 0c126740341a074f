/**
 * Convolution kernels for the wasm backend as SIMD matrix products, generated at run time with
 * {@linkcode "./wasm_asm.ts"} into a small module that imports the backend's own memory and
 * works on the tensors where they lie.
 *
 * The shipped XNNPACK build is 128-bit SIMD without fused multiply-add; these kernels use
 * relaxed-SIMD `f32x4.relaxed_madd` (a fused multiply-add on x86 with FMA3) where the runtime
 * has it, and multiply + add otherwise. Both directions of a stride-1 NHWC convolution are one
 * "indirect GEMM" (a table of the input pixel under each filter tap, as XNNPACK does, so no
 * im2col copy is made):
 *
 * - forward and input gradient: `out[p, o] = sum_(t, i) x[src(p, t), i] W[t, i, o]`, tiles of
 *   `MR` pixels by 8 output channels;
 * - filter gradient: `dW[t, i, o] = sum_p x[src(p, t), i] dy[p, o]`, tiles of 4 input channels by
 *   8 output channels, over chunks of pixels that stay in cache.
 *
 * @module
 */
import { buildModule, Fn } from "./wasm_asm.ts";

/** Rows (pixels) of a forward tile. */
export const FWD_MR = 6;
/** Pixels per cache chunk of the forward kernel. */
const FWD_MC = 64;
/** Pixels per cache chunk of the filter-gradient kernel. */
const WGRAD_PC = 512;

/** Whether this runtime validates relaxed SIMD (`f32x4.relaxed_madd`). */
export function hasRelaxedSimd(): boolean {
  const f = new Fn([], ["v128"]);
  f.v128Const0().v128Const0().v128Const0().f32x4RelaxedMadd();
  try {
    return WebAssembly.validate(buildModule({
      memory: { shared: false },
      functions: [{ name: "f", fn: f }],
    }) as BufferSource);
  } catch {
    return false;
  }
}

/** `acc = a * b + acc` on the stack discipline of {@linkcode Fn}. */
function madd(f: Fn, fma: boolean, a: number, b: number, acc: number): void {
  if (fma) f.get(a).get(b).get(acc).f32x4RelaxedMadd().set(acc);
  else f.get(a).get(b).f32x4Mul().get(acc).f32x4Add().set(acc);
}

/**
 * `make_ptrs(idx, out, pixels, taps, x, zero, ci4, tapMajor)`: the byte address of the input
 * pixel of each (output pixel, tap) pair, `idx[p, t] < 0 ? zero : x + idx[p, t] * ci4`, stored at
 * `out[p, t]`, or at `out[t, p]` when `tapMajor` is 1.
 */
function makePointers(): Fn {
  const f = new Fn(["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"]);
  const [IDX, OUT, PIXELS, TAPS, X, ZERO, CI4, TAP_MAJOR] = [0, 1, 2, 3, 4, 5, 6, 7];
  const p = f.local("i32"), t = f.local("i32"), j = f.local("i32"), k = f.local("i32");
  f.block().loop();
  f.get(p).get(PIXELS).i32GeS().brIf(1);
  f.i32(0).set(t);
  f.block().loop();
  f.get(t).get(TAPS).i32GeS().brIf(1);
  f.get(IDX).get(k).i32(2).i32Shl().i32Add().i32Load().set(j);
  // destination index: tapMajor ? t * pixels + p : k
  f.get(OUT);
  f.get(t).get(PIXELS).i32Mul().get(p).i32Add().get(k).get(TAP_MAJOR).select();
  f.i32(2).i32Shl().i32Add();
  f.get(ZERO).get(X).get(j).get(CI4).i32Mul().i32Add().get(j).i32(0).i32LtS().select();
  f.i32Store();
  f.get(k).i32(1).i32Add().set(k);
  f.get(t).i32(1).i32Add().set(t).br(0);
  f.end().end();
  f.get(p).i32(1).i32Add().set(p).br(0);
  f.end().end();
  return f;
}

/**
 * `conv_fwd(ptrs, bp, out, m0, m1, ci, taps, co, zero)`: rows `[m0, m1)` of
 * `out[p, o] = sum_t sum_i ptrs[p, t][i] * bp[o / 8][t][i][o % 8]`, where `ptrs[p, t]` is the byte
 * address of the input pixel (channels contiguous) and `bp` the weights packed by blocks of 8
 * output channels (`co` a multiple of 8). With `unroll`, `ci` must be a multiple of 4.
 */
function convForward(fma: boolean, mr: number, unroll: boolean): Fn {
  const f = new Fn(["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"]);
  const [PTRS, BP, OUT, M0, M1, CI, TAPS, CO, ZERO] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const mc = f.local("i32"), mcEnd = f.local("i32"), m = f.local("i32");
  const nb = f.local("i32"), nbs = f.local("i32"), t = f.local("i32"), i = f.local("i32");
  const kb = f.local("i32"), k32 = f.local("i32"), co4 = f.local("i32"), o = f.local("i32");
  const p = Array.from({ length: mr }, () => f.local("i32"));
  const acc = Array.from({ length: 2 * mr }, () => f.local("v128"));
  const b0 = f.local("v128"), b1 = f.local("v128"), a = f.local("v128");
  const step = unroll ? 4 : 1;
  f.get(CO).i32(3).i32ShrU().set(nbs);
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(TAPS).get(CI).i32Mul().i32(5).i32Shl().set(k32);
  // for (mc = m0; mc < m1; mc += MC)
  f.get(M0).set(mc);
  f.block().loop();
  f.get(mc).get(M1).i32GeS().brIf(1);
  f.get(mc).i32(FWD_MC).i32Add().set(mcEnd);
  f.get(mcEnd).get(M1).i32GtS().if().get(M1).set(mcEnd).end();
  // for (nb = 0; nb < nbs; nb++)
  f.i32(0).set(nb);
  f.block().loop();
  f.get(nb).get(nbs).i32GeS().brIf(1);
  // for (m = mc; m < mcEnd; m += mr)
  f.get(mc).set(m);
  f.block().loop();
  f.get(m).get(mcEnd).i32GeS().brIf(1);
  for (const r of acc) f.v128Const0().set(r);
  f.get(BP).get(nb).get(k32).i32Mul().i32Add().set(kb);
  // for (t = 0; t < taps; t++)
  f.i32(0).set(t);
  f.block().loop();
  f.get(t).get(TAPS).i32GeS().brIf(1);
  for (let r = 0; r < mr; r++) {
    // p_r = m + r < mcEnd ? ptrs[(m + r) * taps + t] : zero
    f.get(ZERO).set(p[r]);
    f.get(m).i32(r).i32Add().get(mcEnd).i32LtS().if();
    f.get(PTRS).get(m).i32(r).i32Add().get(TAPS).i32Mul().get(t).i32Add().i32(2).i32Shl().i32Add()
      .i32Load().set(p[r]);
    f.end();
  }
  // for (i = ci; i > 0; i -= step)
  f.get(CI).set(i);
  f.loop();
  for (let u = 0; u < step; u++) {
    f.get(kb).v128Load(32 * u).set(b0);
    f.get(kb).v128Load(32 * u + 16).set(b1);
    for (let r = 0; r < mr; r++) {
      f.get(p[r]).v128Load32Splat(4 * u).set(a);
      madd(f, fma, a, b0, acc[2 * r]);
      madd(f, fma, a, b1, acc[2 * r + 1]);
    }
  }
  for (let r = 0; r < mr; r++) f.get(p[r]).i32(4 * step).i32Add().set(p[r]);
  f.get(kb).i32(32 * step).i32Add().set(kb);
  f.get(i).i32(-step).i32Add().tee(i).brIf(0);
  f.end();
  f.get(t).i32(1).i32Add().set(t).br(0);
  f.end().end();
  // store the valid rows
  for (let r = 0; r < mr; r++) {
    f.get(m).i32(r).i32Add().get(mcEnd).i32LtS().if();
    f.get(OUT).get(m).i32(r).i32Add().get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add()
      .set(o);
    f.get(o).get(acc[2 * r]).v128Store(0);
    f.get(o).get(acc[2 * r + 1]).v128Store(16);
    f.end();
  }
  f.get(m).i32(mr).i32Add().set(m).br(0);
  f.end().end();
  f.get(nb).i32(1).i32Add().set(nb).br(0);
  f.end().end();
  f.get(mcEnd).set(mc).br(0);
  f.end().end();
  return f;
}

/**
 * `conv_wgrad(ptrs, dy, dw, p0, p1, ci, taps, co, pixels)`: adds to `dw[t, i, o]` (layout
 * `[taps, ci, co]`) the sum over pixels `p` in `[p0, p1)` of `ptrs[t, p][i] * dy[p, o]`
 * (`ptrs` tap-major over `pixels` pixels, `ci` a multiple of 4, `co` of 8).
 */
function convFilterGrad(fma: boolean): Fn {
  const f = new Fn(["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"]);
  const [PTRS, DY, DW, P0, P1, CI, TAPS, CO, PIXELS] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const pc = f.local("i32"), pe = f.local("i32"), t = f.local("i32"), i0 = f.local("i32");
  const nb = f.local("i32"), p = f.local("i32"), ptr = f.local("i32"), i4 = f.local("i32");
  const dwp = f.local("i32"), dyp = f.local("i32"), ip = f.local("i32"), ptr1 = f.local("i32");
  const co4 = f.local("i32"), dyp1 = f.local("i32");
  const acc = Array.from({ length: 8 }, () => f.local("v128"));
  const b0 = f.local("v128"), b1 = f.local("v128"), a = f.local("v128");
  f.get(CO).i32(2).i32Shl().set(co4);
  const body = (ptrLocal: number, dyLocal: number) => {
    f.get(dyLocal).v128Load(0).set(b0);
    f.get(dyLocal).v128Load(16).set(b1);
    for (let r = 0; r < 4; r++) {
      f.get(ptrLocal).v128Load32Splat(4 * r).set(a);
      madd(f, fma, a, b0, acc[2 * r]);
      madd(f, fma, a, b1, acc[2 * r + 1]);
    }
  };
  // for (pc = p0; pc < p1; pc += PC)
  f.get(P0).set(pc);
  f.block().loop();
  f.get(pc).get(P1).i32GeS().brIf(1);
  f.get(pc).i32(WGRAD_PC).i32Add().set(pe);
  f.get(pe).get(P1).i32GtS().if().get(P1).set(pe).end();
  f.i32(0).set(t);
  f.block().loop(); // taps
  f.get(t).get(TAPS).i32GeS().brIf(1);
  f.i32(0).set(i0);
  f.block().loop(); // input channels by 4
  f.get(i0).get(CI).i32GeS().brIf(1);
  f.get(i0).i32(2).i32Shl().set(i4);
  f.i32(0).set(nb);
  f.block().loop(); // output channels by 8
  f.get(nb).i32(3).i32Shl().get(CO).i32GeS().brIf(1);
  // dwp = dw + ((t * ci + i0) * co + nb * 8) * 4
  f.get(DW).get(t).get(CI).i32Mul().get(i0).i32Add().get(co4).i32Mul().i32Add().get(nb).i32(5)
    .i32Shl().i32Add().set(dwp);
  for (let r = 0; r < 4; r++) {
    f.get(dwp).get(co4).i32(r).i32Mul().i32Add().v128Load(0).set(acc[2 * r]);
    f.get(dwp).get(co4).i32(r).i32Mul().i32Add().v128Load(16).set(acc[2 * r + 1]);
  }
  // ip = ptrs + (t * pixels + pc) * 4; dyp = dy + pc * co4 + nb * 32
  f.get(PTRS).get(t).get(PIXELS).i32Mul().get(pc).i32Add().i32(2).i32Shl().i32Add().set(ip);
  f.get(DY).get(pc).get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(dyp);
  f.get(pc).set(p);
  // pairs of pixels
  f.block().loop();
  f.get(p).i32(1).i32Add().get(pe).i32GeS().brIf(1);
  f.get(ip).i32Load(0).get(i4).i32Add().set(ptr);
  f.get(ip).i32Load(4).get(i4).i32Add().set(ptr1);
  f.get(dyp).get(co4).i32Add().set(dyp1);
  body(ptr, dyp);
  body(ptr1, dyp1);
  f.get(ip).i32(8).i32Add().set(ip);
  f.get(dyp1).get(co4).i32Add().set(dyp);
  f.get(p).i32(2).i32Add().set(p).br(0);
  f.end().end();
  // the last pixel of an odd count
  f.get(p).get(pe).i32LtS().if();
  f.get(ip).i32Load(0).get(i4).i32Add().set(ptr);
  body(ptr, dyp);
  f.end();
  for (let r = 0; r < 4; r++) {
    f.get(dwp).get(co4).i32(r).i32Mul().i32Add().get(acc[2 * r]).v128Store(0);
    f.get(dwp).get(co4).i32(r).i32Mul().i32Add().get(acc[2 * r + 1]).v128Store(16);
  }
  f.get(nb).i32(1).i32Add().set(nb).br(0);
  f.end().end();
  f.get(i0).i32(4).i32Add().set(i0).br(0);
  f.end().end();
  f.get(t).i32(1).i32Add().set(t).br(0);
  f.end().end();
  f.get(pe).set(pc).br(0);
  f.end().end();
  return f;
}

/** The compiled kernels, bound to one memory. */
export interface GemmKernels {
  /** Whether the kernels use fused multiply-add. */
  readonly fma: boolean;
  makePointers(
    idx: number,
    out: number,
    pixels: number,
    taps: number,
    x: number,
    zero: number,
    ci4: number,
    tapMajor: number,
  ): void;
  /** Forward kernel for any `ci`. */
  convForward(
    ptrs: number,
    bp: number,
    out: number,
    m0: number,
    m1: number,
    ci: number,
    taps: number,
    co: number,
    zero: number,
  ): void;
  /** Forward kernel for `ci % 4 == 0`. */
  convForward4(
    ptrs: number,
    bp: number,
    out: number,
    m0: number,
    m1: number,
    ci: number,
    taps: number,
    co: number,
    zero: number,
  ): void;
  convFilterGrad(
    ptrs: number,
    dy: number,
    dw: number,
    p0: number,
    p1: number,
    ci: number,
    taps: number,
    co: number,
    pixels: number,
  ): void;
}

/** The module's bytes (shared or plain memory import). */
export function gemmModuleBytes(shared: boolean, fma = hasRelaxedSimd()): Uint8Array {
  return buildModule({
    memory: { shared },
    functions: [
      { name: "make_ptrs", fn: makePointers() },
      { name: "conv_fwd", fn: convForward(fma, FWD_MR, false) },
      { name: "conv_fwd4", fn: convForward(fma, FWD_MR, true) },
      { name: "conv_wgrad", fn: convFilterGrad(fma) },
    ],
  });
}

/** Compile and instantiate the kernels on `memory`. */
export function instantiateGemm(memory: WebAssembly.Memory): GemmKernels {
  const shared = memory.buffer instanceof SharedArrayBuffer;
  const fma = hasRelaxedSimd();
  const module = new WebAssembly.Module(gemmModuleBytes(shared, fma) as BufferSource);
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const e = instance.exports as Record<string, (...args: number[]) => void>;
  return {
    fma,
    makePointers: e.make_ptrs,
    convForward: e.conv_fwd,
    convForward4: e.conv_fwd4,
    convFilterGrad: e.conv_wgrad,
  };
}
