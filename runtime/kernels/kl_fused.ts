/**
 * The masked pixel-wise KL divergence of the `kl` regularizer as one kernel with one gradient
 * kernel per input:
 *
 * `sum_pixels m * sum_c p (log max(p, eps) - log max(q, eps)) / max(sum m, 1)`
 *
 * for probability maps `p`, `q` `[..., C]` and a mask `m` of one value per pixel (without a mask,
 * the plain mean over pixels). Composed from tfjs ops this is some 11 kernels forward and 20
 * backward (on webgpu each a GPU program); here the forward is one kernel (`cpu`: one loop,
 * float64 sums; webgpu: partial sums + one final pass, `webgpu_kl.ts`) and each input's
 * gradient one kernel, run only where that input needs a gradient:
 *
 * - `dp = g m / D (log max(p, eps) - log max(q, eps) + [p >= eps])`,
 * - `dq = -g m / D p / max(q, eps) [q >= eps]`,
 *
 * with `D = max(sum m, 1)` and tfjs's `maximum` gradient (to the first input where `a >= b`).
 * The mask's gradient (never needed in training: the mask does not depend on the weights) is
 * the same as the composed ops', from tfjs ops.
 *
 * ```ts
 * import { klFused, klFusedAvailable } from "./kl_fused.ts";
 * const loss = klFusedAvailable() ? klFused(p, q, { eps: 1e-8, mask }) : composed(p, q);
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernels, kernelMemory } from "../tfjs_internals.ts";
import { denominator, fusedAvailable, maskedMeanMaskGradient, pixelLayout } from "./fused_mean.ts";

/** Forward kernel without a mask: inputs `{p, q}`, outputs `[loss, partials]`. */
export const KL_KERNEL = "MiSslKlConsistency";
/** Forward kernel with a mask: inputs `{p, q, mask}`, outputs `[loss, partials]`. */
export const KL_MASKED_KERNEL = "MiSslKlConsistencyMasked";
/** Gradient kernel: inputs `{dy, p, q, partials, mask?}`, output `dp` or `dq` (attr `side`). */
export const KL_GRAD_KERNEL = "MiSslKlConsistencyGrad";

/** Attributes of the kernels (`side`: the gradient kernel's). */
export interface KlAttrs {
  eps: number;
  side?: "p" | "q";
}

/** The denominator's floor, `max(sum m, 1)` (as `maskedMean` in `plugins/regularizers`). */
export const KL_FLOOR = 1;

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Check the kernels' inputs (float32, same shapes, a mask of one value per pixel). */
export function klLayout(name: string, p: TensorInfo, q: TensorInfo, mask?: TensorInfo) {
  for (const t of mask === undefined ? [p, q] : [p, q, mask]) {
    if (t.dtype !== "float32") throw new Error(`${name}: float32 tensors only`);
  }
  if (!tf.util.arraysEqual(p.shape, q.shape)) {
    throw new Error(`${name}: p [${p.shape}] and q [${q.shape}] differ in shape`);
  }
  return pixelLayout(name, p, mask);
}

function forwardCpu(args: KernelArgs): TensorInfo[] {
  const { p, q, mask } = args.inputs as Record<string, TensorInfo | undefined>;
  // the clamp compares float32 values with float32 eps, as tfjs's `maximum` does
  const eps = Math.fround((args.attrs as unknown as KlAttrs).eps);
  const { pixels, channels } = klLayout(KL_KERNEL, p!, q!, mask);
  const mem = kernelMemory(args.backend);
  const loss = mem.alloc([]);
  const partials = mem.alloc([1, 2]);
  const pv = mem.view(p!), qv = mem.view(q!);
  const mv = mask === undefined ? null : mem.view(mask);
  const logEps = Math.log(eps);
  let num = 0, den = 0;
  for (let i = 0; i < pixels; i++) {
    const m = mv === null ? 1 : mv[i];
    den += m;
    let kl = 0;
    for (let j = i * channels; j < (i + 1) * channels; j++) {
      const a = pv[j], b = qv[j];
      kl += a * ((a >= eps ? Math.log(a) : logEps) - (b >= eps ? Math.log(b) : logEps));
    }
    num += m * kl;
  }
  const pt = mem.view(partials);
  pt[0] = num;
  pt[1] = den;
  mem.view(loss)[0] = num / Math.max(den, KL_FLOOR);
  return [loss, partials];
}

function gradCpu(args: KernelArgs): TensorInfo {
  const { dy, p, q, partials, mask } = args.inputs as Record<string, TensorInfo | undefined>;
  const { side } = args.attrs as unknown as KlAttrs;
  const eps = Math.fround((args.attrs as unknown as KlAttrs).eps);
  const { pixels, channels } = klLayout(KL_GRAD_KERNEL, p!, q!, mask);
  const mem = kernelMemory(args.backend);
  const out = mem.alloc(p!.shape);
  const pv = mem.view(p!), qv = mem.view(q!), ov = mem.view(out);
  const mv = mask === undefined ? null : mem.view(mask);
  const scale = mem.view(dy!)[0] / denominator(mem.view(partials!), KL_FLOOR);
  const logEps = Math.log(eps);
  for (let i = 0; i < pixels; i++) {
    const s = scale * (mv === null ? 1 : mv[i]);
    for (let j = i * channels; j < (i + 1) * channels; j++) {
      const a = pv[j], b = qv[j];
      if (side === "q") {
        ov[j] = b >= eps ? -s * a / b : 0;
      } else {
        const d = (a >= eps ? Math.log(a) : logEps) - (b >= eps ? Math.log(b) : logEps);
        ov[j] = s * (d + (a >= eps ? 1 : 0));
      }
    }
  }
  return out;
}

/** The mask's gradient: the per-pixel KL through {@linkcode maskedMeanMaskGradient}. */
function maskGradient(dy: tf.Tensor, p: tf.Tensor, q: tf.Tensor, mask: tf.Tensor, eps: number) {
  return tf.tidy(() => {
    const kl = tf.sum(
      tf.mul(p, tf.sub(tf.log(tf.maximum(p, eps)), tf.log(tf.maximum(q, eps)))),
      -1,
    );
    return maskedMeanMaskGradient(dy, kl, mask, KL_FLOOR);
  });
}

/** Register the `cpu` kernels and the gradients (idempotent; none for `wasm`: `fused_mean.ts`). */
export function registerKlFused(): void {
  addKernels("cpu", {
    [KL_KERNEL]: forwardCpu,
    [KL_MASKED_KERNEL]: forwardCpu,
    [KL_GRAD_KERNEL]: gradCpu,
  });
  for (const kernelName of [KL_KERNEL, KL_MASKED_KERNEL]) {
    if (tf.getGradient(kernelName) !== undefined) continue;
    const masked = kernelName === KL_MASKED_KERNEL;
    tf.registerGradient({
      kernelName,
      inputsToSave: masked ? ["p", "q", "mask"] : ["p", "q"],
      outputsToSave: [false, true],
      gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
        const dy = Array.isArray(dys) ? dys[0] : dys;
        const [p, q] = saved;
        const mask = masked ? saved[2] : undefined;
        const partials = saved[saved.length - 1];
        const eps = (attrs as unknown as KlAttrs).eps;
        const side = (which: "p" | "q") => () =>
          tf.engine().runKernel(
            KL_GRAD_KERNEL,
            { dy, p, q, partials, ...(mask ? { mask } : {}) } as unknown as tf.NamedTensorMap,
            { eps, side: which } as unknown as tf.NamedAttrMap,
          ) as tf.Tensor;
        const grads: Record<string, () => tf.Tensor> = { p: side("p"), q: side("q") };
        if (mask) grads.mask = () => maskGradient(dy, p, q, mask, eps);
        return grads;
      },
    });
  }
}

/** Whether the fused kernels run on the active backend (never with `kernels: builtin`). */
export function klFusedAvailable(): boolean {
  return fusedAvailable(KL_KERNEL, registerKlFused);
}

/**
 * The masked mean over pixels of `sum_c p (log max(p, eps) - log max(q, eps))` through the
 * fused kernels (see the module doc); differentiable in `p`, `q` and `mask`.
 */
export function klFused(
  p: tf.Tensor,
  q: tf.Tensor,
  options: { eps: number; mask?: tf.Tensor },
): tf.Scalar {
  registerKlFused();
  const { mask } = options;
  const inputs = mask === undefined ? { p, q } : { p, q, mask: tf.cast(mask, "float32") };
  const [loss, partials] = tf.engine().runKernel(
    mask === undefined ? KL_KERNEL : KL_MASKED_KERNEL,
    inputs as unknown as tf.NamedTensorMap,
    { eps: options.eps } as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  partials.dispose();
  return loss as tf.Scalar;
}
