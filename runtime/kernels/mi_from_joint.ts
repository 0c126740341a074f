/**
 * The mutual information's tail as one kernel and one gradient kernel: from the joints of all
 * displacements (`[K, C, C]`, tiny) to the scalar `mean_d I_d`, where each joint is symmetrised
 * (`symmetrize`), normalised to sum 1 and clamped at `eps` (`P_d`), and
 * `I_d = sum P_d (log P_d - w log rowsum_d - w log colsum_d)` (`w`: `marginalWeight`).
 * Composed from tfjs ops (`plugins/regularizers/_mi_composed.ts`) that is a transpose, an add,
 * a division, two sums, a maximum, three logs, ... and as many gradient ops: some 25 GPU
 * programs on webgpu, each a dispatch for a few hundred values. Here it is one forward and one
 * backward program (`webgpu_mi.ts`), and plain float64 loops on `cpu` and `wasm` (this file).
 *
 * The gradient, for an upstream `g` and `N = A / S` (`A` the symmetrised joint, `S` its sum):
 *
 *     dP_ij = g / K (log P_ij + 1 - w log rowsum_i - w log colsum_j - 2w)
 *     dN_ij = dP_ij where N_ij >= eps, else 0     (tfjs's maximum: the first input on ties)
 *     dA_ij = (dN_ij - sum_kl dN_kl N_kl) / S
 *     dJ    = (dA + dA^T) / 2 when symmetrised, else dA
 *
 * (When symmetrised, `P` is symmetric, so `dA` is already symmetric up to rounding; dropping the
 * last average changes nothing the tests can see, dropping the forward's symmetrisation does.)
 *
 * ```ts
 * import { miFromJoint } from "./mi_from_joint.ts";
 * const mi = miFromJoint(joint, { eps: 1.1920929e-7, symmetrize: true, marginalWeight: 1 });
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernel, kernelMemory, kernelMode } from "../tfjs_internals.ts";

/** Kernel name of the forward pass: `{ joint }` -> the scalar mean of `I_d`. */
export const MI_FROM_JOINT = "MiSslMiFromJoint";
/** Kernel name of the backward pass: `{ joint, dy }` -> `dJoint`, the joint's shape. */
export const MI_FROM_JOINT_GRAD = "MiSslMiFromJointGrad";

/** Attributes of both kernels. */
export interface MiFromJointAttrs {
  /** Clamp of the normalised joint. */
  eps: number;
  /** Symmetrise each joint, `(J + J^T) / 2`. */
  symmetrize: boolean;
  /** Weight of the marginal terms (1: the plain mutual information). */
  marginalWeight: number;
}

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** `[K, C]` of a joint tensor whose last two axes are `C x C`. */
export function jointLayout(shape: readonly number[], name: string): { k: number; c: number } {
  const c = shape[shape.length - 1];
  if (shape.length < 2 || shape[shape.length - 2] !== c || c < 1) {
    throw new Error(`${name}: joints [..., C, C] expected, got [${shape}]`);
  }
  const k = shape.slice(0, -2).reduce((a, d) => a * d, 1);
  return { k, c };
}

/**
 * The per-displacement quantities of joint `d`: its (symmetrised) sum `s` and the row and column
 * sums of `P` (written into `rows`, `cols`); `a(i, j)` reads the symmetrised joint.
 */
function marginals(
  a: (i: number, j: number) => number,
  c: number,
  eps: number,
  rows: Float64Array,
  cols: Float64Array,
): number {
  let s = 0;
  for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) s += a(i, j);
  rows.fill(0);
  cols.fill(0);
  for (let i = 0; i < c; i++) {
    for (let j = 0; j < c; j++) {
      const p = Math.max(a(i, j) / s, eps);
      rows[i] += p;
      cols[j] += p;
    }
  }
  return s;
}

/** The symmetrised (or plain) joint `d` of `values`, as a reader. */
function reader(values: Float32Array, d: number, c: number, symmetrize: boolean) {
  const base = d * c * c;
  return symmetrize
    ? (i: number, j: number) => (values[base + i * c + j] + values[base + j * c + i]) / 2
    : (i: number, j: number) => values[base + i * c + j];
}

/** `mean_d I_d` of `K` joints `C x C` in `values`, accumulated in float64. */
export function miFromJointValues(
  values: Float32Array,
  k: number,
  c: number,
  o: MiFromJointAttrs,
): number {
  const rows = new Float64Array(c), cols = new Float64Array(c);
  const w = o.marginalWeight;
  let total = 0;
  for (let d = 0; d < k; d++) {
    const a = reader(values, d, c, o.symmetrize);
    const s = marginals(a, c, o.eps, rows, cols);
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        const p = Math.max(a(i, j) / s, o.eps);
        total += p * (Math.log(p) - w * (Math.log(rows[i]) + Math.log(cols[j])));
      }
    }
  }
  return total / k;
}

/** The gradient of {@linkcode miFromJointValues} for upstream `dy`, into `out` (float64 math). */
export function miFromJointGradValues(
  values: Float32Array,
  k: number,
  c: number,
  o: MiFromJointAttrs,
  dy: number,
  out: Float32Array,
): void {
  const rows = new Float64Array(c), cols = new Float64Array(c);
  const dA = new Float64Array(c * c);
  const w = o.marginalWeight;
  const g = dy / k;
  for (let d = 0; d < k; d++) {
    const a = reader(values, d, c, o.symmetrize);
    const s = marginals(a, c, o.eps, rows, cols);
    let dot = 0;
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        const n = a(i, j) / s;
        const p = Math.max(n, o.eps);
        const dn = n >= o.eps
          ? g * (Math.log(p) + 1 - w * (Math.log(rows[i]) + Math.log(cols[j])) - 2 * w)
          : 0;
        dA[i * c + j] = dn;
        dot += dn * n;
      }
    }
    for (let i = 0; i < c * c; i++) dA[i] = (dA[i] - dot) / s;
    const base = d * c * c;
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        out[base + i * c + j] = o.symmetrize ? (dA[i * c + j] + dA[j * c + i]) / 2 : dA[i * c + j];
      }
    }
  }
}

function checkFloat(name: string, ...infos: TensorInfo[]): void {
  for (const info of infos) {
    if (info.dtype !== "float32") throw new Error(`${name}: float32 tensors only`);
  }
}

/** `MiSslMiFromJoint` on `cpu` and `wasm`. */
function forwardKernel(args: KernelArgs): TensorInfo {
  const { joint } = args.inputs as { joint: TensorInfo };
  const o = args.attrs as unknown as MiFromJointAttrs;
  checkFloat(MI_FROM_JOINT, joint);
  const { k, c } = jointLayout(joint.shape, MI_FROM_JOINT);
  const mem = kernelMemory(args.backend);
  const out = mem.alloc([]);
  mem.view(out)[0] = miFromJointValues(mem.view(joint), k, c, o);
  return out;
}

/** `MiSslMiFromJointGrad` on `cpu` and `wasm`. */
function backwardKernel(args: KernelArgs): TensorInfo {
  const { joint, dy } = args.inputs as { joint: TensorInfo; dy: TensorInfo };
  const o = args.attrs as unknown as MiFromJointAttrs;
  checkFloat(MI_FROM_JOINT_GRAD, joint, dy);
  const { k, c } = jointLayout(joint.shape, MI_FROM_JOINT_GRAD);
  const mem = kernelMemory(args.backend);
  const out = mem.alloc([...joint.shape]);
  // views only after the allocation (the wasm heap may have moved)
  miFromJointGradValues(mem.view(joint), k, c, o, mem.view(dy)[0], mem.view(out));
  return out;
}

/**
 * Register both kernels for `cpu` and `wasm` (through `tfjs_internals.ts`, so that `kernels:
 * builtin` takes them out again) and the gradient (idempotent). The webgpu kernels are
 * `webgpu_mi.ts`'s.
 */
export function registerMiFromJoint(): void {
  for (const backendName of ["wasm", "cpu"]) {
    addKernel({ kernelName: MI_FROM_JOINT, backendName, kernelFunc: forwardKernel });
    addKernel({ kernelName: MI_FROM_JOINT_GRAD, backendName, kernelFunc: backwardKernel });
  }
  if (tf.getGradient(MI_FROM_JOINT) === undefined) {
    tf.registerGradient({
      kernelName: MI_FROM_JOINT,
      inputsToSave: ["joint"],
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
        const [joint] = saved;
        const g = Array.isArray(dy) ? dy[0] : dy;
        return {
          joint: () =>
            tf.engine().runKernel(
              MI_FROM_JOINT_GRAD,
              { joint, dy: g } as unknown as tf.NamedTensorMap,
              attrs,
            ) as tf.Tensor,
        };
      },
    });
  }
}

/** Whether the fused tail runs on the active backend (never with `kernels: builtin`). */
export function miFromJointAvailable(): boolean {
  if (kernelMode() === "builtin") return false;
  registerMiFromJoint();
  return tf.getKernel(MI_FROM_JOINT, tf.getBackend()) !== undefined &&
    tf.getKernel(MI_FROM_JOINT_GRAD, tf.getBackend()) !== undefined;
}

/**
 * `mean_d I_d` of the joints (`[..., C, C]`, one per displacement; see the module comment),
 * differentiable in `joint`.
 */
export function miFromJoint(joint: tf.Tensor, attrs: MiFromJointAttrs): tf.Scalar {
  registerMiFromJoint();
  jointLayout(joint.shape, "miFromJoint");
  return tf.engine().runKernel(
    MI_FROM_JOINT,
    { joint } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Scalar;
}
