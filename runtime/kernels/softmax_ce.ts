/**
 * The supervised pixel-wise cross-entropy of the `cross-entropy` loss as one softmax
 * cross-entropy kernel and one gradient kernel:
 *
 * `sum_pixels m * (logsumexp(l) - l_y) / max(sum m, 1e-12)`
 *
 * for logits `l` `[..., C]`, integer labels `y` (one per pixel; a label outside `[0, C)` has no
 * one-hot, so its pixel adds 0, as with `tf.oneHot`) and optional pixel weights `m` (without
 * them, the plain mean over pixels). Composed from tfjs ops (one-hot, log-softmax, product,
 * sums, mean) this is some 12 kernels forward and 15 backward; here the forward is one kernel
 * (`cpu`: one loop, float64 sums; webgpu: partial sums + one final pass,
 * `webgpu_softmax_ce.ts`) and the logits' gradient one:
 * `dl = g m / D (softmax(l) [y valid] - onehot(y))`. The weights' gradient (not needed in
 * training) is the composed ops', from tfjs ops.
 *
 * ```ts
 * import { softmaxCrossEntropyFused, softmaxCeAvailable } from "./softmax_ce.ts";
 * const loss = softmaxCeAvailable() ? softmaxCrossEntropyFused(logits, labels) : composed();
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernels, kernelMemory } from "../tfjs_internals.ts";
import { denominator, fusedAvailable, maskedMeanMaskGradient, pixelLayout } from "./fused_mean.ts";

/** Forward kernel without weights: inputs `{logits, labels}`, outputs `[loss, partials]`. */
export const CE_KERNEL = "MiSslSoftmaxCrossEntropy";
/** Forward kernel with weights: inputs `{logits, labels, mask}`, outputs `[loss, partials]`. */
export const CE_MASKED_KERNEL = "MiSslSoftmaxCrossEntropyMasked";
/** Gradient kernel: inputs `{dy, logits, labels, partials, mask?}`, output `dlogits`. */
export const CE_GRAD_KERNEL = "MiSslSoftmaxCrossEntropyGrad";

/** The denominator's floor with weights (as `plugins/losses/cross_entropy.ts`). */
export const CE_FLOOR = 1e-12;

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Check the kernels' inputs: float32 logits and weights, int32 labels, one per pixel. */
export function ceLayout(name: string, logits: TensorInfo, labels: TensorInfo, mask?: TensorInfo) {
  if (logits.dtype !== "float32" || (mask !== undefined && mask.dtype !== "float32")) {
    throw new Error(`${name}: float32 logits and weights only`);
  }
  if (labels.dtype !== "int32") throw new Error(`${name}: int32 labels only`);
  const layout = pixelLayout(name, logits, mask);
  if (labels.shape.reduce((a, d) => a * d, 1) !== layout.pixels) {
    throw new Error(`${name}: labels [${labels.shape}] do not match logits [${logits.shape}]`);
  }
  return layout;
}

function forwardCpu(args: KernelArgs): TensorInfo[] {
  const { logits, labels, mask } = args.inputs as Record<string, TensorInfo | undefined>;
  const { pixels, channels: c } = ceLayout(CE_KERNEL, logits!, labels!, mask);
  const mem = kernelMemory(args.backend);
  const loss = mem.alloc([]);
  const partials = mem.alloc([1, 2]);
  const lv = mem.view(logits!);
  const yv = new Int32Array(mem.view(labels!).buffer, mem.view(labels!).byteOffset, pixels);
  const mv = mask === undefined ? null : mem.view(mask);
  let num = 0, den = 0;
  for (let i = 0; i < pixels; i++) {
    const m = mv === null ? 1 : mv[i];
    den += m;
    const y = yv[i];
    if (y < 0 || y >= c) continue;
    let mx = -Infinity;
    for (let j = i * c; j < (i + 1) * c; j++) mx = Math.max(mx, lv[j]);
    let s = 0;
    for (let j = i * c; j < (i + 1) * c; j++) s += Math.exp(lv[j] - mx);
    num += m * (mx + Math.log(s) - lv[i * c + y]);
  }
  const pt = mem.view(partials);
  pt[0] = num;
  pt[1] = den;
  mem.view(loss)[0] = num / Math.max(den, mask === undefined ? 0 : CE_FLOOR);
  return [loss, partials];
}

function gradCpu(args: KernelArgs): TensorInfo {
  const { dy, logits, labels, partials, mask } = args.inputs as Record<
    string,
    TensorInfo | undefined
  >;
  const { pixels, channels: c } = ceLayout(CE_GRAD_KERNEL, logits!, labels!, mask);
  const mem = kernelMemory(args.backend);
  const out = mem.alloc(logits!.shape);
  const lv = mem.view(logits!), ov = mem.view(out);
  const yv = new Int32Array(mem.view(labels!).buffer, mem.view(labels!).byteOffset, pixels);
  const mv = mask === undefined ? null : mem.view(mask);
  const scale = mem.view(dy!)[0] /
    denominator(mem.view(partials!), mask === undefined ? 0 : CE_FLOOR);
  for (let i = 0; i < pixels; i++) {
    const y = yv[i];
    const at = i * c;
    if (y < 0 || y >= c) {
      ov.fill(0, at, at + c);
      continue;
    }
    const s = scale * (mv === null ? 1 : mv[i]);
    let mx = -Infinity;
    for (let j = at; j < at + c; j++) mx = Math.max(mx, lv[j]);
    let sum = 0;
    for (let j = at; j < at + c; j++) sum += Math.exp(lv[j] - mx);
    for (let j = 0; j < c; j++) {
      ov[at + j] = s * (Math.exp(lv[at + j] - mx) / sum - (j === y ? 1 : 0));
    }
  }
  return out;
}

/** Per-pixel cross-entropy from tfjs ops (for the weights' gradient). */
function perPixel(logits: tf.Tensor, labels: tf.Tensor): tf.Tensor {
  const c = logits.shape[logits.shape.length - 1];
  const oneHot = tf.oneHot(tf.reshape(labels, logits.shape.slice(0, -1)) as tf.Tensor, c);
  return tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits, -1)), -1));
}

/** The weights' gradient: the per-pixel cross-entropy through {@linkcode maskedMeanMaskGradient}. */
function maskGradient(dy: tf.Tensor, logits: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor) {
  return tf.tidy(() => maskedMeanMaskGradient(dy, perPixel(logits, labels), mask, CE_FLOOR));
}

/** Register the `cpu` kernels and the gradients (idempotent; none for `wasm`: `fused_mean.ts`). */
export function registerSoftmaxCe(): void {
  addKernels("cpu", {
    [CE_KERNEL]: forwardCpu,
    [CE_MASKED_KERNEL]: forwardCpu,
    [CE_GRAD_KERNEL]: gradCpu,
  });
  for (const kernelName of [CE_KERNEL, CE_MASKED_KERNEL]) {
    if (tf.getGradient(kernelName) !== undefined) continue;
    const masked = kernelName === CE_MASKED_KERNEL;
    tf.registerGradient({
      kernelName,
      inputsToSave: masked ? ["logits", "labels", "mask"] : ["logits", "labels"],
      outputsToSave: [false, true],
      gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const dy = Array.isArray(dys) ? dys[0] : dys;
        const [logits, labels] = saved;
        const mask = masked ? saved[2] : undefined;
        const partials = saved[saved.length - 1];
        const grads: Record<string, () => tf.Tensor> = {
          logits: () =>
            tf.engine().runKernel(
              CE_GRAD_KERNEL,
              {
                dy,
                logits,
                labels,
                partials,
                ...(mask ? { mask } : {}),
              } as unknown as tf.NamedTensorMap,
              {},
            ) as tf.Tensor,
          labels: () => tf.zerosLike(labels).toFloat(),
        };
        if (mask) grads.mask = () => maskGradient(dy, logits, labels, mask);
        return grads;
      },
    });
  }
}

/** Whether the fused kernels run on the active backend (never with `kernels: builtin`). */
export function softmaxCeAvailable(): boolean {
  return fusedAvailable(CE_KERNEL, registerSoftmaxCe);
}

/**
 * The (weighted) mean over pixels of the softmax cross-entropy of `logits` `[..., C]` against
 * integer `labels` (one per pixel) through the fused kernels (see the module doc);
 * differentiable in `logits` and `mask`.
 */
export function softmaxCrossEntropyFused(
  logits: tf.Tensor,
  labels: tf.Tensor,
  mask?: tf.Tensor,
): tf.Scalar {
  registerSoftmaxCe();
  return tf.tidy(() => {
    const y = tf.cast(labels, "int32");
    const inputs = mask === undefined
      ? { logits, labels: y }
      : { logits, labels: y, mask: tf.cast(mask, "float32") };
    const [loss] = tf.engine().runKernel(
      mask === undefined ? CE_KERNEL : CE_MASKED_KERNEL,
      inputs as unknown as tf.NamedTensorMap,
      {},
    ) as tf.Tensor[];
    return loss as tf.Scalar;
  });
}
