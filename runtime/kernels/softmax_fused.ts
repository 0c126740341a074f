/**
 * Softmax over the last axis with a one-kernel gradient. tfjs's `Softmax` is one kernel, but its
 * gradient is four (`dy y`, a sum, a product, a difference: on webgpu four GPU programs); here
 * the gradient is one kernel, `dx = dy y - sum_c(dy y) y` per pixel (tfjs's formula), and so is
 * the forward pass (`y = exp(l - max l) / sum exp(l - max l)`). On `cpu` plain loops
 * with float64 sums; on webgpu a thread per pixel (`webgpu_softmax.ts`). The step context's
 * probability maps (`core/step_context.ts`) go through {@linkcode softmaxLastAxis}, which takes
 * tfjs's `tf.softmax` with `kernels: builtin` and on `wasm` (faster there: `fused_mean.ts`).
 *
 * ```ts
 * import { softmaxLastAxis } from "./softmax_fused.ts";
 * const probs = softmaxLastAxis(logits); // [B, H, W, C]
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernels, kernelMemory } from "../tfjs_internals.ts";
import { fusedAvailable } from "./fused_mean.ts";

/** Forward kernel: inputs `{logits}`, output the probabilities. */
export const SOFTMAX_KERNEL = "MiSslSoftmax";
/** Gradient kernel: inputs `{dy, y}`, output `dlogits`. */
export const SOFTMAX_GRAD_KERNEL = "MiSslSoftmaxGrad";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Check float32 `[..., C]` inputs of one shape; returns the rows and their length. */
export function softmaxLayout(name: string, ...infos: TensorInfo[]) {
  const [x] = infos;
  for (const t of infos) {
    if (t.dtype !== "float32") throw new Error(`${name}: float32 tensors only`);
    if (!tf.util.arraysEqual(t.shape, x.shape)) throw new Error(`${name}: shapes differ`);
  }
  if (x.shape.length < 1) throw new Error(`${name}: a [..., C] input expected`);
  const channels = x.shape[x.shape.length - 1];
  const size = x.shape.reduce((a, d) => a * d, 1);
  return { rows: channels === 0 ? 0 : size / channels, channels };
}

function forwardCpu(args: KernelArgs): TensorInfo {
  const { logits } = args.inputs as Record<string, TensorInfo>;
  const { rows, channels: c } = softmaxLayout(SOFTMAX_KERNEL, logits);
  const mem = kernelMemory(args.backend);
  const out = mem.alloc(logits.shape);
  const lv = mem.view(logits), ov = mem.view(out);
  for (let i = 0; i < rows; i++) {
    const at = i * c;
    let mx = -Infinity;
    for (let j = at; j < at + c; j++) mx = Math.max(mx, lv[j]);
    let s = 0;
    for (let j = at; j < at + c; j++) s += Math.exp(lv[j] - mx);
    for (let j = at; j < at + c; j++) ov[j] = Math.exp(lv[j] - mx) / s;
  }
  return out;
}

function gradCpu(args: KernelArgs): TensorInfo {
  const { dy, y } = args.inputs as Record<string, TensorInfo>;
  const { rows, channels: c } = softmaxLayout(SOFTMAX_GRAD_KERNEL, dy, y);
  const mem = kernelMemory(args.backend);
  const out = mem.alloc(y.shape);
  const dv = mem.view(dy), yv = mem.view(y), ov = mem.view(out);
  for (let i = 0; i < rows; i++) {
    const at = i * c;
    let s = 0;
    for (let j = at; j < at + c; j++) s += dv[j] * yv[j];
    for (let j = at; j < at + c; j++) ov[j] = dv[j] * yv[j] - s * yv[j];
  }
  return out;
}

/** Register the `cpu` kernels and the gradient (idempotent; none for `wasm`: `fused_mean.ts`). */
export function registerSoftmaxFused(): void {
  addKernels("cpu", { [SOFTMAX_KERNEL]: forwardCpu, [SOFTMAX_GRAD_KERNEL]: gradCpu });
  if (tf.getGradient(SOFTMAX_KERNEL) !== undefined) return;
  tf.registerGradient({
    kernelName: SOFTMAX_KERNEL,
    outputsToSave: [true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const dy = Array.isArray(dys) ? dys[0] : dys;
      const [y] = saved;
      return {
        logits: () =>
          tf.engine().runKernel(SOFTMAX_GRAD_KERNEL, { dy, y } as unknown as tf.NamedTensorMap, {}),
      } as Record<string, () => tf.Tensor>;
    },
  });
}

/** Whether the fused kernels run on the active backend (never with `kernels: builtin`). */
export function softmaxFusedAvailable(): boolean {
  return fusedAvailable(SOFTMAX_KERNEL, registerSoftmaxFused);
}

/**
 * Softmax over the last axis: the fused kernels where available (see the module doc), else
 * `tf.softmax`.
 */
export function softmaxLastAxis<T extends tf.Tensor>(logits: T): T {
  if (!softmaxFusedAvailable() || logits.dtype !== "float32") return tf.softmax(logits) as T;
  return softmaxFused(logits);
}

/** Softmax over the last axis of float32 `logits` through the fused kernels. */
export function softmaxFused<T extends tf.Tensor>(logits: T): T {
  registerSoftmaxFused();
  return tf.engine().runKernel(
    SOFTMAX_KERNEL,
    { logits } as unknown as tf.NamedTensorMap,
    {},
  ) as T;
}
