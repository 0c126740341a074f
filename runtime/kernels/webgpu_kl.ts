/**
 * The fused KL consistency (`kl_fused.ts`'s kernels) on webgpu, in WGSL: the forward pass is
 * 2 programs (partial sums of `m * sum_c p (log max(p, eps) - log max(q, eps))` and of `m`,
 * then the final pass, `webgpu_reduce.ts`), each input's gradient 1 (a thread per value; every
 * workgroup first adds the partials' mask sums for the normaliser). Composed from tfjs ops the
 * same loss and both gradients are some 30 programs.
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernels } from "../tfjs_internals.ts";
import {
  KL_FLOOR,
  KL_GRAD_KERNEL,
  KL_KERNEL,
  KL_MASKED_KERNEL,
  type KlAttrs,
  klLayout,
  registerKlFused,
} from "./kl_fused.ts";
import {
  GRADIENT_SCALE,
  LossProgram,
  lossUniforms,
  PartialSumsProgram,
  runLossGradient,
  runMeanLoss,
  THREADS,
} from "./webgpu_reduce.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** First pass of the forward: the per-pixel KL. */
class KlPartialProgram extends PartialSumsProgram {
  readonly variableNames: string[];
  readonly shaderKey: string;

  constructor(pixels: number, masked: boolean) {
    super(pixels, masked);
    this.variableNames = masked ? ["p", "q", "mask"] : ["p", "q"];
    this.shaderKey = `miSslKlPartial_${masked}`;
  }

  pixelLossCode(): string {
    return `
      fn pixelLoss(i : i32) -> f32 {
        var kl = 0.0;
        let C = uniforms.channels;
        for (var j = i * C; j < (i + 1) * C; j = j + 1) {
          let a = p[j];
          kl = kl + a * (log(max(a, uniforms.eps)) - log(max(q[j], uniforms.eps)));
        }
        return kl;
      }
    `;
  }
}

/** `dp` or `dq`, a thread per value (the formulas of `kl_fused.ts`). */
class KlGradProgram extends LossProgram {
  readonly variableNames: string[];
  readonly shaderKey: string;

  constructor(size: number, readonly masked: boolean, readonly side: "p" | "q") {
    super(size, Math.ceil(size / THREADS));
    this.variableNames = ["dy", "partials", "p", "q", ...(masked ? ["mask"] : [])];
    this.shaderKey = `miSslKlGrad_${side}_${masked}`;
  }

  getUserCode(): string {
    const value = this.side === "p"
      ? `let a = p[index];
         var d = log(max(a, uniforms.eps)) - log(max(q[index], uniforms.eps));
         if (a >= uniforms.eps) { d = d + 1.0; }
         result[index] = s * d;`
      : `let b = q[index];
         var d = 0.0;
         if (b >= uniforms.eps) { d = -p[index] / b; }
         result[index] = s * d;`;
    return `
      ${GRADIENT_SCALE}
      fn main(unused : i32) {
        let t = i32(localIndex);
        let scale = gradientScale(t);
        let index = flatIndex(t);
        if (index < uniforms.size) {
          let s = scale * ${this.masked ? "mask[index / uniforms.channels]" : "1.0"};
          ${value}
        }
      }
    `;
  }
}

/** Forward: `{p, q, mask?}` to `[loss, partials]` in 2 programs. */
export function klWebgpu(args: KernelArgs): TensorInfo[] {
  const { p, q, mask } = args.inputs as Record<string, TensorInfo | undefined>;
  const { eps } = args.attrs as unknown as KlAttrs;
  const { pixels, channels } = klLayout(KL_KERNEL, p!, q!, mask);
  const backend = args.backend as unknown as WebgpuBackendLike;
  const inputs = mask === undefined ? [p!, q!] : [p!, q!, mask];
  return runMeanLoss(
    backend,
    new KlPartialProgram(pixels, mask !== undefined),
    inputs,
    lossUniforms(pixels, channels, eps, KL_FLOOR),
  );
}

/** Gradient: `{dy, p, q, partials, mask?}` to `dp` or `dq` (attr `side`) in 1 program. */
export function klGradWebgpu(args: KernelArgs): TensorInfo {
  const { dy, p, q, partials, mask } = args.inputs as Record<string, TensorInfo | undefined>;
  const { eps, side } = args.attrs as unknown as KlAttrs;
  const { pixels, channels } = klLayout(KL_GRAD_KERNEL, p!, q!, mask);
  const size = pixels * channels;
  const backend = args.backend as unknown as WebgpuBackendLike;
  const inputs = [dy!, partials!, p!, q!, ...(mask === undefined ? [] : [mask])];
  return runLossGradient(
    backend,
    new KlGradProgram(size, mask !== undefined, side ?? "p"),
    inputs,
    lossUniforms(pixels, channels, eps, KL_FLOOR, size),
    p!.shape,
  );
}

/** Register the kernels for webgpu (idempotent), and the gradients (`kl_fused.ts`). */
export function registerWebgpuKl(): void {
  registerKlFused();
  addKernels("webgpu", {
    [KL_KERNEL]: klWebgpu,
    [KL_MASKED_KERNEL]: klWebgpu,
    [KL_GRAD_KERNEL]: klGradWebgpu,
  });
}
