/**
 * The mutual information's fused tail (`MiSslMiFromJoint`, `MiSslMiFromJointGrad`: the interface
 * and the arithmetic of `mi_from_joint.ts`) for `@tensorflow/tfjs-backend-webgpu`, one small
 * WGSL program each instead of some 25 composed ones:
 *
 * - forward: one workgroup; thread `t` computes `I_d` of the displacements `d = t, t + 64, ...`
 *   and thread 0 adds the 64 partial sums in order and divides by `K`;
 * - backward: a thread per displacement writes its `C x C` block of `dJoint`.
 *
 * Each thread keeps its joint's row and column sums in arrays of `C` values (`C` is compiled
 * into the shader: one pipeline per class count). The joints are a few hundred values, so the
 * work is negligible; what the fusion saves is the dispatches.
 *
 * ```ts
 * import { registerWebgpuMiKernels } from "./webgpu_mi.ts";
 * registerWebgpuMiKernels(); // with kernels: custom, after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernels } from "../tfjs_internals.ts";
import {
  jointLayout,
  MI_FROM_JOINT,
  MI_FROM_JOINT_GRAD,
  type MiFromJointAttrs,
  registerMiFromJoint,
} from "./mi_from_joint.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

const WORKGROUP = 64;

/**
 * WGSL shared by both programs: `miJ(base, i, j)`, the (symmetrised) joint, and `miSums(base)`,
 * which fills the private `miRows`, `miCols` of `P = max(miJ / s, eps)` and returns `s`.
 */
function common(c: number): string {
  return `
    var<private> miRows : array<f32, ${c}>;
    var<private> miCols : array<f32, ${c}>;

    fn miJ(base : i32, i : i32, j : i32) -> f32 {
      if (uniforms.symmetrize != 0) {
        return (joint[base + i * ${c} + j] + joint[base + j * ${c} + i]) * 0.5;
      }
      return joint[base + i * ${c} + j];
    }

    fn miSums(base : i32) -> f32 {
      var s = 0.0;
      for (var i = 0; i < ${c}; i++) {
        miRows[i] = 0.0;
        miCols[i] = 0.0;
        for (var j = 0; j < ${c}; j++) {
          s = s + miJ(base, i, j);
        }
      }
      for (var i = 0; i < ${c}; i++) {
        for (var j = 0; j < ${c}; j++) {
          let p = max(miJ(base, i, j) / s, uniforms.eps);
          miRows[i] = miRows[i] + p;
          miCols[j] = miCols[j] + p;
        }
      }
      return s;
    }
  `;
}

const UNIFORMS = "k : i32, eps : f32, w : f32, symmetrize : i32,";

/** `mean_d I_d` in one workgroup: partial sums over `d` per thread, added in order. */
class MiFromJointProgram {
  readonly variableNames = ["joint"];
  readonly uniforms = UNIFORMS;
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly outputShape = [1];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number] = [1, 1, 1];
  readonly shaderKey: string;
  readonly size = false;

  constructor(private readonly c: number) {
    this.shaderKey = `miSslMiFromJoint_${c}`;
  }

  getUserCode(): string {
    const c = this.c;
    return `
      ${common(c)}
      var<workgroup> miPartial : array<f32, ${WORKGROUP}>;

      fn main(index : i32) {
        let t = i32(localIndex);
        var acc = 0.0;
        for (var d = t; d < uniforms.k; d = d + ${WORKGROUP}) {
          let base = d * ${c * c};
          let s = miSums(base);
          for (var i = 0; i < ${c}; i++) {
            for (var j = 0; j < ${c}; j++) {
              let p = max(miJ(base, i, j) / s, uniforms.eps);
              acc = acc + p * (log(p) - uniforms.w * (log(miRows[i]) + log(miCols[j])));
            }
          }
        }
        miPartial[t] = acc;
        workgroupBarrier();
        if (t == 0) {
          var total = 0.0;
          for (var u = 0; u < ${WORKGROUP}; u++) {
            total = total + miPartial[u];
          }
          result[0] = total / f32(uniforms.k);
        }
      }
    `;
  }
}

/** `dJoint`: a thread per displacement (see `mi_from_joint.ts` for the formulas). */
class MiFromJointGradProgram {
  readonly variableNames = ["joint", "dy"];
  readonly uniforms = UNIFORMS;
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly outputShape: number[];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;
  readonly size = false;

  constructor(private readonly k: number, private readonly c: number) {
    this.outputShape = [k * c * c];
    this.dispatch = [Math.ceil(k / WORKGROUP), 1, 1];
    this.shaderKey = `miSslMiFromJointGrad_${c}`;
  }

  getUserCode(): string {
    const c = this.c;
    return `
      ${common(c)}

      // dN_ij for joint sum s (zero where the clamp is active), scaled by g = dy / K
      fn miDn(base : i32, s : f32, g : f32, i : i32, j : i32) -> f32 {
        let n = miJ(base, i, j) / s;
        if (n < uniforms.eps) {
          return 0.0;
        }
        let w = uniforms.w;
        return g * (log(n) + 1.0 - w * (log(miRows[i]) + log(miCols[j])) - 2.0 * w);
      }

      fn main(index : i32) {
        let d = index;
        if (d >= uniforms.k) {
          return;
        }
        let base = d * ${c * c};
        let s = miSums(base);
        let g = dy[0] / f32(uniforms.k);
        var dot = 0.0;
        for (var i = 0; i < ${c}; i++) {
          for (var j = 0; j < ${c}; j++) {
            dot = dot + miDn(base, s, g, i, j) * (miJ(base, i, j) / s);
          }
        }
        for (var i = 0; i < ${c}; i++) {
          for (var j = 0; j < ${c}; j++) {
            var v = (miDn(base, s, g, i, j) - dot) / s;
            if (uniforms.symmetrize != 0) {
              v = 0.5 * (v + (miDn(base, s, g, j, i) - dot) / s);
            }
            result[base + i * ${c} + j] = v;
          }
        }
      }
    `;
  }
}

function uniformsOf(k: number, o: MiFromJointAttrs) {
  return [
    { type: "int32", data: [k] },
    { type: "float32", data: [o.eps] },
    { type: "float32", data: [o.marginalWeight] },
    { type: "int32", data: [o.symmetrize ? 1 : 0] },
  ];
}

/** A view of the same data with another shape (nothing copied or dispatched). */
function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

function check(name: string, ...infos: TensorInfo[]): void {
  for (const t of infos) if (t.dtype !== "float32") throw new Error(`${name}: float32 only`);
}

/** `MiSslMiFromJoint` on webgpu: one program. */
function miFromJointWebgpu(args: KernelArgs): TensorInfo {
  const { joint } = args.inputs as { joint: TensorInfo };
  check(MI_FROM_JOINT, joint);
  const { k, c } = jointLayout(joint.shape, MI_FROM_JOINT);
  const backend = args.backend as unknown as WebgpuBackendLike;
  const out = backend.runWebGPUProgram(
    new MiFromJointProgram(c),
    [view(joint, [k * c * c])],
    "float32",
    uniformsOf(k, args.attrs as unknown as MiFromJointAttrs),
  );
  return view(out, []);
}

/** `MiSslMiFromJointGrad` on webgpu: one program. */
function miFromJointGradWebgpu(args: KernelArgs): TensorInfo {
  const { joint, dy } = args.inputs as { joint: TensorInfo; dy: TensorInfo };
  check(MI_FROM_JOINT_GRAD, joint, dy);
  const { k, c } = jointLayout(joint.shape, MI_FROM_JOINT_GRAD);
  const backend = args.backend as unknown as WebgpuBackendLike;
  const out = backend.runWebGPUProgram(
    new MiFromJointGradProgram(k, c),
    [view(joint, [k * c * c]), view(dy, [1])],
    "float32",
    uniformsOf(k, args.attrs as unknown as MiFromJointAttrs),
  );
  return view(out, [...joint.shape]);
}

/**
 * Register both kernels for webgpu (idempotent) and the gradient (`mi_from_joint.ts`).
 * `registerWebgpuTrainingKernels` does with `kernels: custom`; `builtin` takes them out again.
 */
export function registerWebgpuMiKernels(): void {
  registerMiFromJoint();
  addKernels("webgpu", {
    [MI_FROM_JOINT]: miFromJointWebgpu,
    [MI_FROM_JOINT_GRAD]: miFromJointGradWebgpu,
  });
}
