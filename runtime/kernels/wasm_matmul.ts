/**
 * `BatchMatMul` with one long dimension for the wasm backend: the MI's joint distributions
 * `A^T B` on the SIMD register tiles, split over the pixels between the threads, and tall
 * products split by rows; plus {@linkcode product}, the same kernel on tensors viewed as
 * matrices (the pointwise convolutions of `wasm_conv_forward.ts` and `wasm_conv_grad.ts`).
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { type KernelCall, runCallLists } from "./wasm_conv.ts";
import { MM_TN_TILES } from "./wasm_gemm.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { dispose, fallback, heapOffset, rowParts, run, sizeOf } from "./wasm_kernel_util.ts";

/** The long dimension from which {@linkcode wasmBatchMatMul} takes a product. */
export const MATMUL_MIN_LONG = 4096;
/** The largest small matrix (output of `A^T B`, or the right factor) it takes. */
export const MATMUL_MAX_SMALL = 16384;

let tnTileProducts = 0;

/** `A^T B` products run on the register tiles so far (tests check the dispatch). */
export function tnTileProductCount(): number {
  return tnTileProducts;
}

/** The most vectors of columns a register tile of `MM_TN_TILES` holds. */
const TILE_VECTORS = Math.max(...MM_TN_TILES.map(([, v]) => v));

/**
 * The register tiles (`[rows, vectors, row, vector]`) that cover an `m x 4 nv` output of
 * `A^T B`: the widest columns first, then for those the tallest tile of `MM_TN_TILES` (listed
 * tallest first) that fits the rows left.
 */
function tnTiles(m: number, nv: number): [number, number, number, number][] {
  const tiles: [number, number, number, number][] = [];
  for (let j0 = 0; j0 < nv; j0 += TILE_VECTORS) {
    const v = Math.min(TILE_VECTORS, nv - j0);
    for (let i0 = 0; i0 < m;) {
      const [r] = MM_TN_TILES.find(([r, tv]) => tv === v && r <= m - i0)!;
      tiles.push([r, v, i0, j0]);
      i0 += r;
    }
  }
  return tiles;
}

/**
 * float32 `BatchMatMul` of one matrix pair where one dimension is long and the rest small: the
 * MI's joint distributions `A^T B` (`[K, m]^T [K, n]`, K = pixels) split over `K` between the
 * threads (each accumulates its own `[m, n]`, added in part order), and their gradients, tall
 * products `[R, m] [m, n]` split by rows. tfjs's kernel for every other case.
 */
export function wasmBatchMatMul(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  const ra = a.shape.length, rb = b.shape.length;
  if (a.dtype !== "float32" || b.dtype !== "float32" || ra < 2 || rb < 2) {
    return fallback(tf.BatchMatMul, args);
  }
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  if (sizeOf(batchA) !== 1 || sizeOf(batchB) !== 1) return fallback(tf.BatchMatMul, args);
  const [a0, a1] = a.shape.slice(-2), [b0, b1] = b.shape.slice(-2);
  const [m, ka] = transposeA ? [a1, a0] : [a0, a1];
  const [kb, n] = transposeB ? [b1, b0] : [b0, b1];
  if (ka !== kb || m === 0 || n === 0 || ka === 0) return fallback(tf.BatchMatMul, args);
  const batch = (batchA.length >= batchB.length ? batchA : batchB).map(() => 1);
  const ao = heapOffset(backend, a), bo = heapOffset(backend, b);
  if (transposeA && !transposeB && ka >= MATMUL_MIN_LONG && m * n <= MATMUL_MAX_SMALL) {
    // out = A^T B, split over the inner dimension
    const parts = rowParts(backend, ka);
    const partial = backend.makeOutput([parts.length, m, n], "float32");
    const tiles = n % 4 === 0 ? tnTiles(m, n / 4) : null;
    // mm_tn adds to its part's sums; the tiles store every element of theirs
    if (tiles === null) (backend.typedArrayFromHeap(partial) as Float32Array).fill(0);
    else tnTileProducts++;
    const po = heapOffset(backend, partial);
    const ok = runCallLists(
      backend,
      parts.map(([k0, k1], p): KernelCall[] =>
        tiles === null
          ? [["mm_tn", ao, bo, po + 4 * p * m * n, k0, k1, m, n]]
          : tiles.map(([mr, nv, i0, j0]): KernelCall => [
            `mm_tn_${mr}x${nv}`,
            ao,
            bo,
            po + 4 * p * m * n,
            k0,
            k1,
            m,
            n,
            i0,
            j0,
          ])
      ),
    );
    if (!ok) {
      backend.disposeData(partial.dataId);
      return fallback(tf.BatchMatMul, args);
    }
    const out = backend.makeOutput([...batch, m, n], "float32");
    const ov = backend.typedArrayFromHeap(out) as Float32Array;
    const pv = backend.typedArrayFromHeap(partial) as Float32Array;
    for (let i = 0; i < m * n; i++) {
      let sum = 0;
      for (let p = 0; p < parts.length; p++) sum += pv[p * m * n + i];
      ov[i] = sum;
    }
    backend.disposeData(partial.dataId);
    return out;
  }
  if (!transposeA && m >= MATMUL_MIN_LONG && ka * n <= MATMUL_MAX_SMALL) {
    // out = A W with W = B or B^T, [ka, n], split by rows
    let w = b, transposed: TensorInfo | null = null;
    if (transposeB) {
      transposed = backend.makeOutput([ka, n], "float32");
      const tv = backend.typedArrayFromHeap(transposed) as Float32Array;
      const bv = backend.typedArrayFromHeap(b) as Float32Array;
      for (let i = 0; i < ka; i++) {
        for (let j = 0; j < n; j++) tv[i * n + j] = bv[j * ka + i];
      }
      w = transposed;
    }
    const out = backend.makeOutput([...batch, m, n], "float32");
    const wo = heapOffset(backend, w), oo = heapOffset(backend, out);
    const ok = runCallLists(
      backend,
      rowParts(backend, m).map(([r0, r1]): KernelCall[] => [[
        "mm_rows",
        ao,
        wo,
        oo,
        r0,
        r1,
        ka,
        n,
      ]]),
    );
    if (transposed !== null) backend.disposeData(transposed.dataId);
    if (ok) return out;
    backend.disposeData(out.dataId);
  }
  return fallback(tf.BatchMatMul, args);
}

/**
 * The `BatchMatMul` (this file's, `wasmBatchMatMul`) of `a` and `b` viewed as the matrices of
 * the given shapes (`transposeA`: `a^T b`), as a tensor of shape `out`.
 */
export function product(
  backend: Backend,
  [a, aShape]: [TensorInfo, number[]],
  [b, bShape]: [TensorInfo, number[]],
  transposeA: boolean,
  out: number[],
): TensorInfo {
  const a2 = run("Reshape", backend, { x: a }, { shape: aShape });
  const b2 = run("Reshape", backend, { x: b }, { shape: bShape });
  try {
    const p = run("BatchMatMul", backend, { a: a2, b: b2 }, { transposeA, transposeB: false });
    // Reshape shares data: disposing the product only drops a reference
    const result = run("Reshape", backend, { x: p }, { shape: out });
    dispose(backend, p);
    return result;
  } finally {
    dispose(backend, a2, b2);
  }
}
