/**
 * Subprocess of `threads_test.ts`: the kernels that run through the kernel pool's call lists
 * (batch norm + ReLU and its gradient, `Multiply` by a `[..., 1]` factor, `BatchMatMul` with a
 * long dimension, float32 `UnsortedSegmentSum`), and the row-wise kernels of `wasm_misc.ts` on
 * the pool (the row copies of `Concat`, `SplitV`, `Slice` and `PadV2`, x2 nearest upsampling and
 * its gradient, the 2x2 max-pool gradient, `Add` of a `[C]` bias), the element-wise kernels of
 * the losses (`wasm_pointwise.ts`), a one-channel 3x3 convolution and its filter gradient (pointer
 * tables), with 2 threads, on shapes large enough to be split,
 * against the cpu backend. Checks that the threaded heap is made at its full, fixed size, that
 * each call shared its parts with the helper and that the helper ran some, prints one line per
 * kernel and `done` at the end.
 *
 * ```sh
 * deno run --allow-read --allow-env --allow-sys tests/_threaded_kernels.ts
 * ```
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { gemmKernels } from "../runtime/kernels/wasm_conv.ts";
import { helperPartCount, splitPartCount, workerCount } from "../runtime/kernels/wasm_pool.ts";
import { batchNormRelu } from "../runtime/kernels/batch_norm_relu.ts";
import { splitCopyCount } from "../runtime/kernels/wasm_training.ts";
import { registerCpuFixes } from "../runtime/kernels/cpu_fixes.ts";
import { memoryImport } from "../runtime/kernels/wasm_asm.ts";
import { fullSizeMemoryCount, THREADED_HEAP_PAGES } from "../runtime/kernels/wasm_threads.ts";

await initBackend("wasm", { threads: 2 });
// The cpu reference with the training fixes (tfjs's cpu ResizeNearestNeighborGrad is wrong for
// batches of more than one image).
registerCpuFixes();
// The kernel module and its helper start with the first use; wait for the helper.
if (gemmKernels(tf.backend() as never) === null) throw new Error("no kernel module");
for (let i = 0; i < 500 && workerCount() < 1; i++) await new Promise((r) => setTimeout(r, 10));
if (workerCount() < 1) throw new Error("no helper worker (threaded wasm unavailable?)");
// The threaded heap is made at its full size, cannot grow, and the kernel modules declare it so.
{
  const memory = gemmKernels(tf.backend() as never)!.memory;
  if (fullSizeMemoryCount() !== 1 || memory.buffer.byteLength !== THREADED_HEAP_PAGES * 65536) {
    throw new Error(`threaded heap: ${memory.buffer.byteLength} bytes`);
  }
  if (memoryImport(memory).pages !== THREADED_HEAP_PAGES) {
    throw new Error("heap not declared fixed");
  }
  let grew = true;
  try {
    memory.grow(1);
  } catch {
    grew = false;
  }
  if (grew) throw new Error("the threaded heap grew");
  console.log(`threaded heap: ${THREADED_HEAP_PAGES} pages, fixed`);
}

function normal(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomNormal(shape, 0, 1, "float32", seed).dataSync() as Float32Array);
}

/**
 * `f` on wasm (2 threads; its work must be shared with the helper) and on cpu: max |wasm - cpu| <= tol * max
 * |cpu| for every output.
 */
async function check(name: string, f: () => tf.Tensor[], tol: number): Promise<void> {
  const results: Float32Array[][] = [];
  for (const backend of ["wasm", "cpu"]) {
    await tf.setBackend(backend);
    const before = splitPartCount();
    results.push(tf.tidy(() => f().map((t) => t.dataSync() as Float32Array)));
    if (backend === "wasm" && splitPartCount() === before) {
      throw new Error(`${name}: no part shared with the helper`);
    }
  }
  await tf.setBackend("wasm");
  const [wasm, cpu] = results;
  cpu.forEach((expected, k) => {
    let scale = 0, err = 0;
    for (let i = 0; i < expected.length; i++) {
      scale = Math.max(scale, Math.abs(expected[i]));
      err = Math.max(err, Math.abs(wasm[k][i] - expected[i]));
    }
    if (!(scale > 0) || !(err <= tol * scale)) {
      throw new Error(`${name}: output ${k}: max error ${err} against ${tol} * ${scale}`);
    }
  });
  console.log(`${name} ok`);
}

// Batch norm + ReLU, forward and gradients, groups of odd sizes, 4 to 40 channels.
for (
  const [k, [shape, groups]] of ([
    [[3, 65, 63, 8], [1, 2]],
    [[4, 33, 35, 20], [1, 1, 2]],
    [[2, 45, 37, 40], [2]],
    [[6, 64, 61, 4], [2, 2, 2]],
  ] as [[number, number, number, number], number[]][]).entries()
) {
  const c = shape[3];
  const xv = normal(shape, 10 + k), wv = normal(shape, 20 + k);
  const gv = normal([c], 30 + k), bv = normal([c], 40 + k);
  await check(`batch norm ${shape.join("x")} groups ${groups}`, () => {
    const x = tf.tensor4d(xv, shape), w = tf.tensor4d(wv, shape);
    const gamma = tf.add(tf.tensor1d(gv), 1.5) as tf.Tensor1D, beta = tf.tensor1d(bv);
    const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(
        batchNormRelu(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, {
          groups,
        }).y,
        w,
      ));
    const y = batchNormRelu(x, gamma, beta, { groups }).y;
    return [y, ...tf.grads(f)([x, gamma, beta])];
  }, 2e-4);
}

// Multiply by a [..., 1] factor (the warp's shape, a tail of 3 floats).
for (const [k, c] of [4, 3, 1 + 8].entries()) {
  const rows = 4 * 4 * 64 * 64 + 7;
  const av = normal([rows * c], 50 + k), bv = normal([rows], 60 + k);
  await check(`Multiply ${rows}x${c} by ${rows}x1`, () => [
    tf.mul(tf.tensor2d(av, [rows, c]), tf.tensor2d(bv, [rows, 1])),
  ], 0);
}

// BatchMatMul: the MI's joint (A^T B) and its two gradients, odd sizes, and on the register
// tiles (36 columns).
for (const kc of [37, 36]) {
  const n = 2 * 128 * 128 + 5, c = 4;
  const pv = normal([n * c], 70), qv = normal([n * kc], 71), gv = normal([c * kc], 72);
  await check(`BatchMatMul ${n}x${c}^T ${n}x${kc} and its gradients`, () => {
    const p = tf.tensor2d(pv, [n, c]), q = tf.tensor2d(qv, [n, kc]);
    const g = tf.tensor2d(gv, [c, kc]);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a, b, true, false), g));
    return [tf.matMul(p, q, true, false), ...tf.grads(f)([p, q])];
  }, 1e-5);
}

// UnsortedSegmentSum: the warp's gradient (4 corners per pixel), 4 and 5 floats per row. Few
// segments for many rows: the cpu backend's kernel, the reference, costs rows x segments (with
// 8192 segments it took minutes on a loaded machine, long enough to trip the hang deadline).
for (const [k, inner] of [4, 5].entries()) {
  const segments = 512, rows = 32768;
  const xv = normal([rows * inner], 80 + k);
  const ids = Int32Array.from({ length: rows }, (_, i) => (i * 7919 + k) % (segments + 3) - 1);
  await check(`UnsortedSegmentSum ${rows}x${inner} into ${segments}`, () => [
    tf.unsortedSegmentSum(tf.tensor2d(xv, [rows, inner]), tf.tensor1d(ids, "int32"), segments),
  ], 1e-6);
}
// Row copies (exact): Concat / SplitV along the channels (many short rows), along a middle axis
// (a few long rows) and along axis 0 (one row, split by bytes: 1,081,652 is not a multiple of 16);
// Slice and PadV2 with odd offsets (the MI's shifted windows and their gradient).
{
  const copies = splitCopyCount();
  const a = normal([5 * 131 * 125 * 5], 90), b = normal([5 * 131 * 125 * 7], 91);
  await check("Concat 5x131x125x(5+7) axis 3 and SplitV back", () => {
    const x = tf.concat([tf.tensor4d(a, [5, 131, 125, 5]), tf.tensor4d(b, [5, 131, 125, 7])], 3);
    return [x, ...tf.split(x, [5, 7], 3)];
  }, 0);
  const c = normal([3 * 260 * 121 * 5], 92), d = normal([3 * 41 * 121 * 5], 93);
  await check("Concat 3x(260+41)x121x5 axis 1 and SplitV back", () => {
    const x = tf.concat([tf.tensor4d(c, [3, 260, 121, 5]), tf.tensor4d(d, [3, 41, 121, 5])], 1);
    return [x, ...tf.split(x, [260, 41], 1)];
  }, 0);
  const e = normal([341 * 61 * 13], 94), f = normal([51 * 61 * 13], 95);
  await check("Concat (341+51)x61x13 axis 0 and SplitV back", () => {
    const x = tf.concat([tf.tensor3d(e, [341, 61, 13]), tf.tensor3d(f, [51, 61, 13])], 0);
    return [x, ...tf.split(x, [341, 51], 0)];
  }, 0);
  const g = normal([2 * 260 * 261 * 5], 96);
  await check("Slice 2x260x261x5 at 1,1,2,0 size 1x258x257x5 and PadV2 back", () => {
    const x = tf.tensor4d(g, [2, 260, 261, 5]);
    const s = tf.slice(x, [1, 1, 2, 0], [1, 258, 257, 5]);
    return [s, tf.pad(s, [[0, 1], [1, 2], [2, 1], [0, 0]], 0.5)];
  }, 0);
  // x2 nearest upsampling, its gradient and the 2x2 max-pool gradient (exact but for the
  // upsampling gradient's sums of 4, 1e-6).
  const u = normal([3 * 37 * 41 * 8], 97), ug = normal([3 * 74 * 82 * 8], 98);
  await check("ResizeNearestNeighbor 3x37x41x8 x2", () => [
    tf.image.resizeNearestNeighbor(tf.tensor4d(u, [3, 37, 41, 8]), [74, 82]),
  ], 0);
  await check("ResizeNearestNeighborGrad 3x74x82x8", () => [
    tf.grad((x: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [74, 82]),
          tf.tensor4d(ug, [3, 74, 82, 8]),
        ),
      )
    )(tf.tensor4d(u, [3, 37, 41, 8])),
  ], 1e-6);
  await check("MaxPoolGrad 2x2 of 3x74x82x8", () => [
    tf.grad((x: tf.Tensor) =>
      tf.sum(tf.mul(tf.maxPool(x as tf.Tensor4D, 2, 2, "valid"), tf.tensor4d(u, [3, 37, 41, 8])))
    )(tf.tensor4d(ug, [3, 74, 82, 8])),
  ], 0);
  // Add of a [C] bias (the head's), either order (exact).
  const hb = normal([12], 99);
  await check("Add 3x74x82x8 + [8] and [1, 12] + 3x74x82x12, Multiply 3x74x82x8 by [8]", () => [
    tf.mul(tf.tensor4d(ug, [3, 74, 82, 8]), tf.tensor1d(hb.subarray(4, 12))),
    tf.add(tf.tensor4d(ug, [3, 74, 82, 8]), tf.tensor1d(hb.subarray(0, 8))),
    tf.add(tf.tensor2d(hb, [1, 12]), tf.tensor4d(normal([3 * 74 * 82 * 12], 100), [3, 74, 82, 12])),
  ], 0);
  if (splitCopyCount() === copies) throw new Error("row copies: none was split");
}
// The fused Adam update (float32 sweep on wasm, float64 JavaScript on cpu), with weight decay and
// a tail of 3 floats.
{
  const n = 3 * 65536 + 3, data = [51, 52, 53].map((seed) => normal([n], seed));
  await check(`Adam update of ${n} floats`, () =>
    tf.engine().runKernel("MiSslAdam", {
      w: tf.tensor1d(data[0]),
      g: tf.tensor1d(data[1]),
      m: tf.mul(tf.tensor1d(data[2]), 0.1),
      v: tf.square(tf.tensor1d(data[2])),
    }, {
      stepSize: 0.01,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      c2: 0.002,
      weightDecay: 0.01,
    }) as tf.Tensor[], 1e-6);
}
// The element-wise kernels of the losses (wasm_pointwise.ts) on the ACDC unlabeled batch's shape:
// Exp and Log within 2 ulp, Sum to float32 rounding, the others exact (GreaterEqual's bool output as
// 0 / 1 floats).
{
  const x = normal([4 * 128 * 128 * 4], 61), y = normal([4 * 128 * 128], 62);
  const t = () => tf.tensor4d(x, [4, 128, 128, 4]);
  await check("Exp, Log and Softmax of 4x128x128x4", () => [
    tf.exp(t()),
    tf.log(tf.abs(t())),
    tf.softmax(t()),
    tf.softmax(tf.reshape(t(), [4, 128, 256, 2])),
  ], 3e-7);
  // (cpu sums in float64)
  await check(
    "Sum of 4x16384x4 over axis 0",
    () => [tf.sum(tf.reshape(t(), [4, 16384, 4]), 0)],
    1e-6,
  );
  await check(
    "Maximum, GreaterEqual with a scalar, Sub of 4x128x128x1",
    () => [
      tf.maximum(t(), 0.1),
      tf.cast(tf.greaterEqual(t(), 0.1), "float32"),
      tf.sub(t(), tf.tensor4d(y, [4, 128, 128, 1])),
    ],
    0,
  );
}
// A 3x3 convolution of a one-channel image (the network's first layer: no Winograd, pointer tables
// split by pixels between the threads), forward and filter gradient.
{
  const xv = normal([2 * 96 * 96], 71),
    fv = normal([9 * 8], 72),
    dv = normal([2 * 96 * 96 * 8], 73);
  await check("Conv2D 2x96x96x1 -> 8 and its filter gradient", () => {
    const x = tf.tensor4d(xv, [2, 96, 96, 1]), f = tf.tensor4d(fv, [3, 3, 1, 8]);
    const dy = tf.tensor4d(dv, [2, 96, 96, 8]);
    return [
      tf.conv2d(x, f, 1, "same"),
      tf.grad((g: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, g as tf.Tensor4D, 1, "same"), dy)))(f),
    ];
  }, 1e-5);
}
// The parts of a job go to whichever thread claims them first; over all the jobs above, the
// helper must have run some.
if (helperPartCount() === 0) throw new Error("the helper ran no part of any job");
console.log(`done (the helper ran ${helperPartCount()} of ${splitPartCount()} shared parts)`);
Deno.exit(0);
