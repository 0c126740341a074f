/**
 * Corrections to `@tensorflow/tfjs-backend-cpu` 4.22.0 kernels that training uses.
 *
 * `ResizeNearestNeighborGrad` (the gradient of nearest upsampling, used by every U-Net with
 * `upsampling: nearest`) reads `dy` at the offset of the *input* image's batch stride, so for a
 * batch of more than one image every image after the first gets the gradient of the wrong pixels
 * (found by comparing the cpu, wasm and webgpu backends). Here it is the exact adjoint of tfjs's
 * forward `ResizeNearestNeighbor` (`alignCorners`, `halfPixelCenters` included): each `dy` pixel
 * is added to the input pixel the forward pass copied it from.
 *
 * ```ts
 * import { registerCpuFixes } from "./cpu_fixes.ts";
 * registerCpuFixes(); // after tf.setBackend("cpu")
 * ```
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { replaceKernel } from "../tfjs_internals.ts";

type TensorInfo = tf.TensorInfo;

interface CpuBackendLike {
  data: { get(id: unknown): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo;
}

/** Source index of output position `o` of nearest resizing, as tfjs's forward kernel computes it. */
function nearestSource(
  o: number,
  inSize: number,
  outSize: number,
  alignCorners: boolean,
  halfPixelCenters: boolean,
): number {
  const effIn = alignCorners && outSize > 1 ? inSize - 1 : inSize;
  const effOut = alignCorners && outSize > 1 ? outSize - 1 : outSize;
  const ratio = effIn / effOut;
  const frac = halfPixelCenters ? ratio * (o + 0.5) : ratio * o;
  let s = Math.min(inSize - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
  if (halfPixelCenters) s = Math.max(0, s);
  return s;
}

/** `ResizeNearestNeighborGrad` on the cpu backend: the adjoint of the forward kernel. */
export function resizeNearestNeighborGradCpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo {
  const { images, dy } = args.inputs as { images: TensorInfo; dy: TensorInfo };
  const { alignCorners = false, halfPixelCenters = false } = args.attrs as {
    alignCorners?: boolean;
    halfPixelCenters?: boolean;
  };
  const backend = args.backend as unknown as CpuBackendLike;
  const [batch, inH, inW, depth] = images.shape;
  const [, outH, outW] = dy.shape;
  const dyValues = backend.data.get(dy.dataId).values;
  const out = new Float32Array(batch * inH * inW * depth);
  const rows = Int32Array.from(
    { length: outH },
    (_, r) => nearestSource(r, inH, outH, alignCorners, halfPixelCenters),
  );
  const cols = Int32Array.from(
    { length: outW },
    (_, c) => nearestSource(c, inW, outW, alignCorners, halfPixelCenters),
  );
  let i = 0;
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < outH; r++) {
      const rowBase = (b * inH + rows[r]) * inW;
      for (let c = 0; c < outW; c++) {
        const base = (rowBase + cols[c]) * depth;
        for (let d = 0; d < depth; d++) out[base + d] += dyValues[i++];
      }
    }
  }
  return backend.makeTensorInfo([batch, inH, inW, depth], "float32", out);
}

/** Replace the cpu backend's faulty kernels by the ones above (idempotent). */
export function registerCpuFixes(): void {
  replaceKernel({
    kernelName: "ResizeNearestNeighborGrad",
    backendName: "cpu",
    kernelFunc: resizeNearestNeighborGradCpu as unknown as tf.KernelFunc,
  });
}
