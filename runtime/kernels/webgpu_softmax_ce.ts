/**
 * The fused softmax cross-entropy (`softmax_ce.ts`'s kernels) on webgpu, in WGSL: the forward
 * pass is 2 programs (partial sums of `m * (logsumexp(l) - l_y)` and of `m`, then the final
 * pass, `webgpu_reduce.ts`), the logits' gradient 1 (a thread per pixel writing its `C` values
 * `g m / D (softmax(l) - onehot(y))`). Composed from tfjs ops the same loss and gradient are
 * some 25 programs.
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernels } from "../tfjs_internals.ts";
import {
  CE_FLOOR,
  CE_GRAD_KERNEL,
  CE_KERNEL,
  CE_MASKED_KERNEL,
  ceLayout,
  registerSoftmaxCe,
} from "./softmax_ce.ts";
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

/** WGSL: the largest logit of pixel `i` and the sum of `exp(l - max)` over its classes. */
const LOG_SUM_EXP = `
  fn rowMax(i : i32) -> f32 {
    let C = uniforms.channels;
    var mx = logits[i * C];
    for (var j = i * C + 1; j < (i + 1) * C; j = j + 1) {
      mx = max(mx, logits[j]);
    }
    return mx;
  }
  fn rowSumExp(i : i32, mx : f32) -> f32 {
    let C = uniforms.channels;
    var s = 0.0;
    for (var j = i * C; j < (i + 1) * C; j = j + 1) {
      s = s + exp(logits[j] - mx);
    }
    return s;
  }
`;

/** First pass of the forward: the per-pixel cross-entropy (0 for a label outside `[0, C)`). */
class CePartialProgram extends PartialSumsProgram {
  readonly variableNames: string[];
  readonly shaderKey: string;

  constructor(pixels: number, masked: boolean) {
    super(pixels, masked);
    this.variableNames = masked ? ["logits", "labels", "mask"] : ["logits", "labels"];
    this.shaderKey = `miSslCePartial_${masked}`;
  }

  pixelLossCode(): string {
    return `
      ${LOG_SUM_EXP}
      fn pixelLoss(i : i32) -> f32 {
        let y = labels[i];
        if (y < 0 || y >= uniforms.channels) { return 0.0; }
        let mx = rowMax(i);
        return mx + log(rowSumExp(i, mx)) - logits[i * uniforms.channels + y];
      }
    `;
  }
}

/** `dlogits`, a thread per pixel. */
class CeGradProgram extends LossProgram {
  readonly variableNames: string[];
  readonly shaderKey: string;

  constructor(readonly pixels: number, size: number, readonly masked: boolean) {
    super(size, Math.ceil(pixels / THREADS));
    this.variableNames = ["dy", "partials", "logits", "labels", ...(masked ? ["mask"] : [])];
    this.shaderKey = `miSslCeGrad_${masked}`;
  }

  getUserCode(): string {
    return `
      ${GRADIENT_SCALE}
      ${LOG_SUM_EXP}
      fn main(unused : i32) {
        let t = i32(localIndex);
        let scale = gradientScale(t);
        let i = flatIndex(t);
        if (i < uniforms.pixels) {
          let C = uniforms.channels;
          let y = labels[i];
          if (y < 0 || y >= C) {
            for (var j = 0; j < C; j = j + 1) { result[i * C + j] = 0.0; }
            return;
          }
          let s = scale * ${this.masked ? "mask[i]" : "1.0"};
          let mx = rowMax(i);
          let sum = rowSumExp(i, mx);
          for (var j = 0; j < C; j = j + 1) {
            var g = exp(logits[i * C + j] - mx) / sum;
            if (j == y) { g = g - 1.0; }
            result[i * C + j] = s * g;
          }
        }
      }
    `;
  }
}

/** Forward: `{logits, labels, mask?}` to `[loss, partials]` in 2 programs. */
export function softmaxCeWebgpu(args: KernelArgs): TensorInfo[] {
  const { logits, labels, mask } = args.inputs as Record<string, TensorInfo | undefined>;
  const { pixels, channels } = ceLayout(CE_KERNEL, logits!, labels!, mask);
  const backend = args.backend as unknown as WebgpuBackendLike;
  const inputs = mask === undefined ? [logits!, labels!] : [logits!, labels!, mask];
  return runMeanLoss(
    backend,
    new CePartialProgram(pixels, mask !== undefined),
    inputs,
    lossUniforms(pixels, channels, 0, mask === undefined ? 0 : CE_FLOOR),
  );
}

/** Gradient: `{dy, logits, labels, partials, mask?}` to `dlogits` in 1 program. */
export function softmaxCeGradWebgpu(args: KernelArgs): TensorInfo {
  const { dy, logits, labels, partials, mask } = args.inputs as Record<
    string,
    TensorInfo | undefined
  >;
  const { pixels, channels } = ceLayout(CE_GRAD_KERNEL, logits!, labels!, mask);
  const size = pixels * channels;
  const backend = args.backend as unknown as WebgpuBackendLike;
  const inputs = [dy!, partials!, logits!, labels!, ...(mask === undefined ? [] : [mask])];
  return runLossGradient(
    backend,
    new CeGradProgram(pixels, size, mask !== undefined),
    inputs,
    lossUniforms(pixels, channels, 0, mask === undefined ? 0 : CE_FLOOR, size),
    logits!.shape,
  );
}

/** Register the kernels for webgpu (idempotent), and the gradient (`softmax_ce.ts`). */
export function registerWebgpuSoftmaxCe(): void {
  registerSoftmaxCe();
  addKernels("webgpu", {
    [CE_KERNEL]: softmaxCeWebgpu,
    [CE_MASKED_KERNEL]: softmaxCeWebgpu,
    [CE_GRAD_KERNEL]: softmaxCeGradWebgpu,
  });
}
