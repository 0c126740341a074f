/**
 * Data-movement kernels of the U-Net's training step for the wasm backend, generated with
 * {@linkcode "./wasm_asm.ts"} and run on the backend's heap: strided row copies (channel-axis
 * `Concat` and `SplitV`), nearest x2 upsampling and its gradient, and the gradient of 2x2
 * stride-2 max pooling. The backend's own versions are generic loops over element indices.
 *
 * @module
 */
import { buildModule, Fn, memoryImport } from "./wasm_asm.ts";
import { warnFallback, wasmHeap } from "../tfjs_internals.ts";

/**
 * `copy_rows(src, dst, rows, bytes, srcStride, dstStride)`: copies `rows` rows of `bytes` bytes
 * (a multiple of 4) between strided layouts.
 */
function copyRows(): Fn {
  const [f, [SRC, DST, ROWS, BYTES, SS, DS]] = Fn.kernel(6);
  const r = f.local("i32"), k = f.local("i32"), s = f.local("i32"), d = f.local("i32");
  const vec = f.local("i32");
  f.get(BYTES).i32(-16).i32Add().set(vec); // last offset where a whole vector fits
  f.get(SRC).set(s);
  f.get(DST).set(d);
  f.for(r, ROWS, 1, () => {
    f.i32(0).set(k);
    f.forTo(k, vec, 16, () => {
      f.get(d).get(k).i32Add().get(s).get(k).i32Add().v128Load().v128Store();
    });
    f.for(k, BYTES, 4, () => {
      f.get(d).get(k).i32Add().get(s).get(k).i32Add().f32Load().f32Store();
    });
    f.get(s).get(SS).i32Add().set(s);
    f.get(d).get(DS).i32Add().set(d);
  });
  return f;
}

/**
 * `up2(x, out, rows, w, cb, grad)`: nearest x2 upsampling of `rows` (batch x height) rows of `w`
 * pixels of `cb` bytes (a multiple of 16): `out[2r + i, 2x + j] = x[r, x]`; with `grad` 1, the
 * gradient instead, `out[r, x] = sum_(i, j) x[2r + i, 2x + j]` (`x` the upsampled gradient).
 */
function up2(): Fn {
  const [f, [X, OUT, ROWS, W, CB, GRAD]] = Fn.kernel(6);
  const r = f.local("i32"), px = f.local("i32"), k = f.local("i32");
  const small = f.local("i32"),
    big = f.local("i32"),
    big2 = f.local("i32"),
    rowBig = f.local("i32");
  const v = f.local("v128");
  // big row (2w pixels) in bytes
  f.get(W).get(CB).i32Mul().i32(1).i32Shl().set(rowBig);
  f.for(r, ROWS, 1, () => {
    f.i32(0).set(px);
    f.for(px, W, 1, () => {
      // small = offset of (r, px); big = offset of (2r, 2px); big2 = next big row
      f.get(r).get(W).i32Mul().get(px).i32Add().get(CB).i32Mul().set(small);
      f.get(r).get(rowBig).i32Mul().i32(1).i32Shl().get(px).get(CB).i32Mul().i32(1).i32Shl()
        .i32Add().set(big);
      f.get(big).get(rowBig).i32Add().set(big2);
      f.i32(0).set(k);
      f.loop();
      f.get(GRAD).if();
      f.get(OUT).get(small).i32Add().get(k).i32Add();
      f.get(X).get(big).i32Add().get(k).i32Add().v128Load();
      f.get(X).get(big).i32Add().get(k).i32Add().get(CB).i32Add().v128Load().f32x4Add();
      f.get(X).get(big2).i32Add().get(k).i32Add().v128Load().f32x4Add();
      f.get(X).get(big2).i32Add().get(k).i32Add().get(CB).i32Add().v128Load().f32x4Add();
      f.v128Store();
      f.else();
      f.get(X).get(small).i32Add().get(k).i32Add().v128Load().set(v);
      f.get(OUT).get(big).i32Add().get(k).i32Add().get(v).v128Store();
      f.get(OUT).get(big).i32Add().get(k).i32Add().get(CB).i32Add().get(v).v128Store();
      f.get(OUT).get(big2).i32Add().get(k).i32Add().get(v).v128Store();
      f.get(OUT).get(big2).i32Add().get(k).i32Add().get(CB).i32Add().get(v).v128Store();
      f.end();
      f.get(k).i32(16).i32Add().tee(k).get(CB).i32LtS().brIf(0);
      f.end();
    });
  });
  return f;
}

/**
 * `max_pool2_grad(x, dy, dx, rows, w, cb)`: the gradient of 2x2 stride-2 max pooling: each
 * `dy[r, px]` goes to the first maximum (row-major window order) of its window of `x`, others
 * get 0. `rows` (batch x pooled height), `w` pooled width, `cb` bytes per pixel (multiple of 16).
 */
function maxPool2Grad(): Fn {
  const [f, [X, DY, DX, ROWS, W, CB]] = Fn.kernel(6);
  const r = f.local("i32"), px = f.local("i32"), k = f.local("i32");
  const small = f.local("i32"), a = f.local("i32"), c = f.local("i32"), rowBig = f.local("i32");
  const v00 = f.local("v128"), v01 = f.local("v128"), v10 = f.local("v128"), v11 = f.local("v128");
  const m = f.local("v128"), e0 = f.local("v128"), e1 = f.local("v128"), e2 = f.local("v128");
  const taken = f.local("v128"), g = f.local("v128");
  f.get(W).get(CB).i32Mul().i32(1).i32Shl().set(rowBig);
  f.for(r, ROWS, 1, () => {
    f.i32(0).set(px);
    f.for(px, W, 1, () => {
      f.get(r).get(W).i32Mul().get(px).i32Add().get(CB).i32Mul().set(small);
      f.get(r).get(rowBig).i32Mul().i32(1).i32Shl().get(px).get(CB).i32Mul().i32(1).i32Shl()
        .i32Add().set(a);
      f.get(a).get(rowBig).i32Add().set(c);
      f.i32(0).set(k);
      f.loop();
      f.get(X).get(a).i32Add().get(k).i32Add().v128Load().set(v00);
      f.get(X).get(a).i32Add().get(k).i32Add().get(CB).i32Add().v128Load().set(v01);
      f.get(X).get(c).i32Add().get(k).i32Add().v128Load().set(v10);
      f.get(X).get(c).i32Add().get(k).i32Add().get(CB).i32Add().v128Load().set(v11);
      f.get(v00).get(v01).f32x4Max().get(v10).get(v11).f32x4Max().f32x4Max().set(m);
      f.get(DY).get(small).i32Add().get(k).i32Add().v128Load().set(g);
      f.get(v00).get(m).f32x4Eq().set(e0);
      f.get(v01).get(m).f32x4Eq().get(e0).v128AndNot().set(e1);
      f.get(e0).get(e1).v128Or().set(taken);
      f.get(v10).get(m).f32x4Eq().get(taken).v128AndNot().set(e2);
      f.get(taken).get(e2).v128Or().set(taken);
      f.get(DX).get(a).i32Add().get(k).i32Add().get(g).get(e0).v128And().v128Store();
      f.get(DX).get(a).i32Add().get(k).i32Add().get(CB).i32Add().get(g).get(e1).v128And()
        .v128Store();
      f.get(DX).get(c).i32Add().get(k).i32Add().get(g).get(e2).v128And().v128Store();
      f.get(DX).get(c).i32Add().get(k).i32Add().get(CB).i32Add().get(g).get(taken).v128AndNot()
        .v128Store();
      f.get(k).i32(16).i32Add().tee(k).get(CB).i32LtS().brIf(0);
      f.end();
    });
  });
  return f;
}

/**
 * `add_bias(x, b, out, rows, cb)`: `out[r, :] = x[r, :] + b` for `rows` rows of `cb` bytes (a
 * multiple of 16): a `[..., C]` tensor plus a `[C]` bias, one float32 addition per element;
 * `mul_bias` multiplies instead (`[..., C]` times `[C]`: batch norm's scale folded into a filter).
 */
function addBias(multiply = false): Fn {
  const [f, [X, B, OUT, ROWS, CB]] = Fn.kernel(5);
  const r = f.local("i32"), k = f.local("i32"), at = f.local("i32");
  f.for(r, ROWS, 1, () => {
    f.get(r).get(CB).i32Mul().set(at);
    f.i32(0).set(k);
    f.loop();
    f.get(OUT).get(at).i32Add().get(k).i32Add();
    f.get(X).get(at).i32Add().get(k).i32Add().v128Load();
    f.get(B).get(k).i32Add().v128Load();
    if (multiply) f.f32x4Mul();
    else f.f32x4Add();
    f.v128Store();
    f.get(k).i32(16).i32Add().tee(k).get(CB).i32LtS().brIf(0);
    f.end();
  });
  return f;
}

/** The kernels, bound to one memory (byte offsets everywhere). */
export interface MiscKernels {
  copyRows(src: number, dst: number, rows: number, bytes: number, ss: number, ds: number): void;
  up2(x: number, out: number, rows: number, w: number, cb: number, grad: number): void;
  maxPool2Grad(x: number, dy: number, dx: number, rows: number, w: number, cb: number): void;
  addBias(x: number, b: number, out: number, rows: number, cb: number): void;
  mulBias(x: number, b: number, out: number, rows: number, cb: number): void;
}

let cached: {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module | null;
  kernels: MiscKernels | null;
} | null = null;

/** The kernels for the wasm backend `backend` (its heap), or null where they cannot run. */
export function miscKernelsFor(backend: unknown): MiscKernels | null {
  const memory = wasmHeap(backend)?.memory;
  if (memory === undefined) return null;
  return miscKernelsForMemory(memory);
}

/**
 * The compiled module of these kernels for `memory` (the kernel pool's helpers instantiate it on
 * the same shared memory, so that `copy_rows` can be split between the threads), or null.
 */
export function miscModuleFor(memory: WebAssembly.Memory): WebAssembly.Module | null {
  miscKernelsForMemory(memory);
  return cached?.memory === memory ? cached.module : null;
}

/** The kernels bound to `memory` (the wasm backend's heap), or null where they cannot run. */
export function miscKernelsForMemory(memory: WebAssembly.Memory): MiscKernels | null {
  if (cached?.memory !== memory) {
    let kernels: MiscKernels | null = null;
    let module: WebAssembly.Module | null = null;
    try {
      const bytes = buildModule({
        memory: memoryImport(memory),
        functions: [
          { name: "copy_rows", fn: copyRows() },
          { name: "up2", fn: up2() },
          { name: "max_pool2_grad", fn: maxPool2Grad() },
          { name: "add_bias", fn: addBias() },
          { name: "mul_bias", fn: addBias(true) },
        ],
      });
      module = new WebAssembly.Module(bytes as BufferSource);
      const instance = new WebAssembly.Instance(module, { env: { memory } });
      const e = instance.exports as Record<string, (...args: number[]) => void>;
      kernels = {
        copyRows: e.copy_rows,
        up2: e.up2,
        maxPool2Grad: e.max_pool2_grad,
        addBias: e.add_bias,
        mulBias: e.mul_bias,
      };
    } catch (error) {
      kernels = null;
      module = null;
      warnFallback(
        "wasm-misc",
        `the SIMD data-movement kernels (${(error as Error).message})`,
        "concat, split, upsampling and max-pool gradients run on tfjs's kernels (slower)",
      );
    }
    cached = { memory, module, kernels };
  }
  return cached.kernels;
}
