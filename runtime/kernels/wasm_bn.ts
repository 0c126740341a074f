/**
 * SIMD sweeps of the fused batch norm + ReLU (`batch_norm_relu.ts`) on the wasm backend's heap,
 * generated with {@linkcode "./wasm_asm.ts"}. Channels are the fastest axis (NHWC); the kernels
 * take `c % 4 == 0` and work on blocks of 16 channels (4 vectors) per sweep over the pixels,
 * with float32 partial sums over chunks of 256 pixels added into float64 accumulators.
 *
 * @module
 */
import { buildModule, Fn, memoryImport, type ModuleFunction } from "./wasm_asm.ts";
import { warnFallback, wasmHeap } from "../tfjs_internals.ts";

const CHUNK = 256;

/** `out64[0..1] += promote(v[0..1]); out64[2..3] += promote(v[2..3])`. */
function addToF64(f: Fn, addr: number, v: number): void {
  f.get(addr).get(addr).v128Load(0).get(v).f64x2PromoteLowF32x4().f64x2Add().v128Store(0);
  f.get(addr).get(addr).v128Load(16).get(v).get(v).v128SwapHalves().f64x2PromoteLowF32x4()
    .f64x2Add().v128Store(16);
}

/**
 * `moments(kind, x, n, cb, g, mean, out)`: for the `G` (1 to 4) channel vectors at byte offset `g`
 * of each of `n` pixels of `cb` bytes from `x`, adds to `out` (float64 per channel, from channel
 * `g / 4`) the sum of `x` (`kind` "sum") or of `(x - mean)^2` (`kind` "sq", `mean` float32 per
 * channel).
 */
function moments(kind: "sum" | "sq", groups: number): Fn {
  const [f, [X, N, CB, G, MEAN, OUT]] = Fn.kernel(6);
  const p = f.local("i32"), end = f.local("i32"), ce = f.local("i32"), ptr = f.local("i32");
  const addr = f.local("i32");
  const acc = Array.from({ length: groups }, () => f.local("v128"));
  const mu = Array.from({ length: groups }, () => f.local("v128"));
  const v = f.local("v128");
  if (kind === "sq") {
    for (let u = 0; u < groups; u++) f.get(MEAN).get(G).i32Add().v128Load(16 * u).set(mu[u]);
  }
  f.get(X).get(G).i32Add().set(ptr);
  f.block().loop();
  f.get(p).get(N).i32GeS().brIf(1);
  f.get(p).i32(CHUNK).i32Add().set(ce);
  f.get(ce).get(N).i32GtS().if().get(N).set(ce).end();
  for (const a of acc) f.v128Const0().set(a);
  f.loop();
  for (let u = 0; u < groups; u++) {
    f.get(ptr).v128Load(16 * u);
    if (kind === "sq") f.get(mu[u]).f32x4Sub().tee(v).get(v).f32x4Mul();
    f.get(acc[u]).f32x4Add().set(acc[u]);
  }
  f.get(ptr).get(CB).i32Add().set(ptr);
  f.get(p).i32(1).i32Add().tee(p).get(ce).i32LtS().brIf(0);
  f.end();
  for (let u = 0; u < groups; u++) {
    f.get(OUT).get(G).i32(1).i32Shl().i32Add().i32(32 * u).i32Add().set(addr);
    addToF64(f, addr, acc[u]);
  }
  f.br(0);
  f.end().end();
  void end;
  return f;
}

/**
 * `apply(x, out, n, c4, scale, shift, relu)`: `out = x * scale + shift` per channel (then
 * `max(., 0)` when `relu` is 1) over `n` pixels of `c4` channel vectors.
 */
function apply(): Fn {
  const [f, [X, OUT, N, C4, SCALE, SHIFT, RELU]] = Fn.kernel(7);
  const p = f.local("i32"), g = f.local("i32"), xo = f.local("i32"), oo = f.local("i32");
  const go = f.local("i32"), zero = f.local("v128"), z = f.local("v128");
  f.v128Const0().set(zero);
  f.get(X).set(xo);
  f.get(OUT).set(oo);
  f.for(p, N, 1, () => {
    f.i32(0).set(g);
    f.loop();
    f.get(g).i32(4).i32Shl().set(go);
    f.get(xo).get(go).i32Add().v128Load().get(SCALE).get(go).i32Add().v128Load().f32x4Mul()
      .get(SHIFT).get(go).i32Add().v128Load().f32x4Add().set(z);
    f.get(RELU).if().get(z).get(zero).f32x4Max().set(z).end();
    f.get(oo).get(go).i32Add().get(z).v128Store();
    f.get(g).i32(1).i32Add().tee(g).get(C4).i32LtS().brIf(0);
    f.end();
    f.get(C4).i32(4).i32Shl().tee(go).get(xo).i32Add().set(xo);
    f.get(go).get(oo).i32Add().set(oo);
  });
  return f;
}

/**
 * `grad_sums(dy, x, y, n, cb, g, mean, s1, s2, relu)`: with `dz = relu ? dy * [y > 0] : dy`,
 * adds `sum dz` to `s1` and `sum dz * (x - mean)` to `s2` (float64 per channel) for the 4
 * channel vectors at byte offset `g` of each pixel.
 */
function gradSums(groups: number): Fn {
  const [f, [DY, X, Y, N, CB, G, MEAN, S1, S2, RELU]] = Fn.kernel(10);
  const p = f.local("i32"), ce = f.local("i32"), off = f.local("i32"), addr = f.local("i32");
  const a1 = Array.from({ length: groups }, () => f.local("v128"));
  const a2 = Array.from({ length: groups }, () => f.local("v128"));
  const mu = Array.from({ length: groups }, () => f.local("v128"));
  const dz = f.local("v128"), zero = f.local("v128");
  f.v128Const0().set(zero);
  for (let u = 0; u < groups; u++) f.get(MEAN).get(G).i32Add().v128Load(16 * u).set(mu[u]);
  f.get(G).set(off);
  f.block().loop();
  f.get(p).get(N).i32GeS().brIf(1);
  f.get(p).i32(CHUNK).i32Add().set(ce);
  f.get(ce).get(N).i32GtS().if().get(N).set(ce).end();
  for (const a of [...a1, ...a2]) f.v128Const0().set(a);
  f.loop();
  for (let u = 0; u < groups; u++) {
    f.get(DY).get(off).i32Add().v128Load(16 * u).set(dz);
    f.get(RELU).if();
    f.get(dz).get(Y).get(off).i32Add().v128Load(16 * u).get(zero).f32x4Gt().v128And().set(dz);
    f.end();
    f.get(a1[u]).get(dz).f32x4Add().set(a1[u]);
    f.get(X).get(off).i32Add().v128Load(16 * u).get(mu[u]).f32x4Sub().get(dz).f32x4Mul().get(a2[u])
      .f32x4Add().set(a2[u]);
  }
  f.get(off).get(CB).i32Add().set(off);
  f.get(p).i32(1).i32Add().tee(p).get(ce).i32LtS().brIf(0);
  f.end();
  for (let u = 0; u < groups; u++) {
    f.get(S1).get(G).i32(1).i32Shl().i32Add().i32(32 * u).i32Add().set(addr);
    addToF64(f, addr, a1[u]);
    f.get(S2).get(G).i32(1).i32Shl().i32Add().i32(32 * u).i32Add().set(addr);
    addToF64(f, addr, a2[u]);
  }
  f.br(0);
  f.end().end();
  return f;
}

/**
 * `grad_apply(dy, x, y, dx, n, c4, a, b, k, relu)`: `dx = a * dz + b * x + k` per channel, with
 * `dz = relu ? dy * [y > 0] : dy`, over `n` pixels of `c4` channel vectors.
 */
function gradApply(): Fn {
  const [f, [DY, X, Y, DX, N, C4, A, B, K, RELU]] = Fn.kernel(10);
  const p = f.local("i32"), g = f.local("i32"), off = f.local("i32"), go = f.local("i32");
  const o = f.local("i32"), dz = f.local("v128"), zero = f.local("v128");
  f.v128Const0().set(zero);
  f.for(p, N, 1, () => {
    f.i32(0).set(g);
    f.loop();
    f.get(g).i32(4).i32Shl().set(go);
    f.get(off).get(go).i32Add().set(o);
    f.get(DY).get(o).i32Add().v128Load().set(dz);
    f.get(RELU).if();
    f.get(dz).get(Y).get(o).i32Add().v128Load().get(zero).f32x4Gt().v128And().set(dz);
    f.end();
    f.get(DX).get(o).i32Add();
    f.get(A).get(go).i32Add().v128Load().get(dz).f32x4Mul();
    f.get(B).get(go).i32Add().v128Load().get(X).get(o).i32Add().v128Load().f32x4Mul().f32x4Add();
    f.get(K).get(go).i32Add().v128Load().f32x4Add();
    f.v128Store();
    f.get(g).i32(1).i32Add().tee(g).get(C4).i32LtS().brIf(0);
    f.end();
    f.get(off).get(C4).i32(4).i32Shl().i32Add().set(off);
  });
  return f;
}

/** The batch-norm sweeps, bound to one memory (byte offsets everywhere). */
export interface BnKernels {
  /** Sums of 4 (`sum4`) or 1 (`sum1`) channel vectors: `(x, n, cb, g, _, out64)`. */
  sum4(x: number, n: number, cb: number, g: number, mean: number, out: number): void;
  sum1(x: number, n: number, cb: number, g: number, mean: number, out: number): void;
  /** Centred sums of squares: `(x, n, cb, g, mean, out64)`. */
  sq4(x: number, n: number, cb: number, g: number, mean: number, out: number): void;
  sq1(x: number, n: number, cb: number, g: number, mean: number, out: number): void;
  apply(
    x: number,
    out: number,
    n: number,
    c4: number,
    scale: number,
    shift: number,
    relu: number,
  ): void;
  gradSums4(...args: number[]): void;
  gradSums1(...args: number[]): void;
  gradApply(...args: number[]): void;
}

/**
 * The sweeps as module functions, named as {@linkcode BnKernels}' exports (`sum4`, `sum1`, `sq4`,
 * `sq1`, `apply`, `grad_sums4`, `grad_sums1`, `grad_apply`) with `prefix` in front: the kernel
 * module of `wasm_gemm.ts` takes them too, so that the pool's threads can run them.
 */
export function bnModuleFunctions(prefix = ""): ModuleFunction[] {
  return [
    { name: `${prefix}sum4`, fn: moments("sum", 4) },
    { name: `${prefix}sum1`, fn: moments("sum", 1) },
    { name: `${prefix}sq4`, fn: moments("sq", 4) },
    { name: `${prefix}sq1`, fn: moments("sq", 1) },
    { name: `${prefix}apply`, fn: apply() },
    { name: `${prefix}grad_sums4`, fn: gradSums(4) },
    { name: `${prefix}grad_sums1`, fn: gradSums(1) },
    { name: `${prefix}grad_apply`, fn: gradApply() },
  ];
}

/** Compile and instantiate the sweeps on `memory`. */
export function instantiateBn(memory: WebAssembly.Memory): BnKernels {
  const bytes = buildModule({ memory: memoryImport(memory), functions: bnModuleFunctions() });
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource), {
    env: { memory },
  });
  const e = instance.exports as Record<string, (...args: number[]) => void>;
  return {
    sum4: e.sum4,
    sum1: e.sum1,
    sq4: e.sq4,
    sq1: e.sq1,
    apply: e.apply,
    gradSums4: e.grad_sums4,
    gradSums1: e.grad_sums1,
    gradApply: e.grad_apply,
  };
}

let cached: { memory: WebAssembly.Memory; kernels: BnKernels | null } | null = null;

/** The sweeps for the wasm backend `backend` (its heap), or null where they cannot run. */
export function bnKernelsFor(backend: unknown): BnKernels | null {
  const memory = wasmHeap(backend)?.memory;
  if (memory === undefined) return null;
  if (cached?.memory !== memory) {
    let kernels: BnKernels | null = null;
    try {
      kernels = instantiateBn(memory);
    } catch (error) {
      kernels = null;
      warnFallback(
        "wasm-bn",
        `the SIMD batch-norm sweeps (${(error as Error).message})`,
        "the fused batch norm + ReLU runs as plain loops (slower, the same results)",
      );
    }
    cached = { memory, kernels };
  }
  return cached.kernels;
}
