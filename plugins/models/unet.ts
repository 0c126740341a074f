/**
 * U-Net (Ronneberger et al. 2015) as the paper's authors build it: `depth` levels of widths
 * `base * 2^k`, each level two (conv3x3 without bias -> batch norm -> ReLU); on the way up an
 * x2 upsampling followed by conv3x3-BN-ReLU, concatenation with the skip, a level block; a 1x1
 * head. Weights are plain `tf.Variable`s so that weight averaging and checkpoints stay simple.
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import {
  type ApplyOptions,
  type ModelContext,
  type ModelFactory,
  type SegmentationModel,
  variableName,
} from "../../core/model.ts";
import { UserError } from "../../core/errors.ts";
import { Rng } from "../../core/rng.ts";
import { batchNormRelu, batchNormReluAvailable } from "../../runtime/kernels/batch_norm_relu.ts";
import { bnRunningStatistics } from "../../runtime/kernels/bn_running_stats.ts";

/** Options of the U-Net plugin. */
export const unetOptions = z.object({
  base: z.number().int().min(1).max(1024).default(16).describe(
    "Channels of the first level; level k has `base 2^k`.",
  ),
  depth: z.number().int().min(1).max(8).default(5).describe("Number of levels (resolutions)."),
  batchNorm: z.boolean().default(true).describe("Batch normalisation after every 3x3 convolution."),
  dropout: z.union([z.number().min(0).max(0.95), z.array(z.number().min(0).max(0.95))]).default(
    0,
  ).describe(
    "Dropout rate before the second convolution of each encoder level: one number for all " +
      "levels or one per level (SSL4MIS uses [0.05, 0.1, 0.2, 0.3, 0.5]).",
  ),
  upsampling: z.enum(["nearest", "bilinear", "transpose"]).default("nearest").describe(
    "Upsampling on the way up.",
  ),
  bnMomentum: z.number().gt(0).lt(1).default(0.1).describe(
    "Batch-norm momentum of the running statistics (PyTorch convention).",
  ),
}).strict();

/** Parsed U-Net options. */
export type UNetOptions = z.infer<typeof unetOptions>;

const BN_EPS = 1e-5;

/**
 * Batch normalisation without the affine part, with statistics over `[batch, H, W]` of each
 * group of consecutive images (one group when `groups` is undefined). Returns the normalised
 * features and the statistics averaged over groups (for the running averages).
 */
function groupNorm(
  y: tf.Tensor4D,
  groups?: number[],
): { normed: tf.Tensor4D; mean: tf.Tensor; variance: tf.Tensor; count: number } {
  const [b, h, w, c] = y.shape;
  if (groups === undefined || groups.length <= 1) {
    const { mean, variance } = tf.moments(y, [0, 1, 2]);
    const normed = tf.mul(tf.sub(y, mean), tf.rsqrt(tf.add(variance, BN_EPS))) as tf.Tensor4D;
    return { normed, mean, variance, count: b * h * w };
  }
  if (groups.every((g) => g === groups[0])) {
    // Equal groups: one reshape, statistics over all but the group and channel axes.
    const g = groups.length;
    const y5 = tf.reshape(y, [g, b / g, h, w, c]);
    const { mean, variance } = tf.moments(y5, [1, 2, 3], true);
    const normed = tf.reshape(
      tf.mul(tf.sub(y5, mean), tf.rsqrt(tf.add(variance, BN_EPS))),
      [b, h, w, c],
    ) as tf.Tensor4D;
    return {
      normed,
      mean: tf.mean(tf.reshape(mean, [g, c]), 0),
      variance: tf.mean(tf.reshape(variance, [g, c]), 0),
      count: (b / g) * h * w,
    };
  }
  const parts = tf.split(y, groups, 0).map((part) => {
    const { mean, variance } = tf.moments(part, [0, 1, 2]);
    return {
      normed: tf.mul(tf.sub(part, mean), tf.rsqrt(tf.add(variance, BN_EPS))),
      mean,
      variance,
    };
  });
  return {
    normed: tf.concat(parts.map((p) => p.normed), 0) as tf.Tensor4D,
    mean: tf.mean(tf.stack(parts.map((p) => p.mean)), 0),
    variance: tf.mean(tf.stack(parts.map((p) => p.variance)), 0),
    count: Math.min(...groups) * h * w,
  };
}

/** Kaiming-normal (fan-in, ReLU gain) initial values from a seeded generator. */
function heNormal(rng: Rng, shape: number[], fanIn: number): Float32Array {
  const std = Math.sqrt(2 / fanIn);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  return out;
}

class UNet implements SegmentationModel {
  readonly trainable = new Map<string, tf.Variable>();
  readonly state = new Map<string, tf.Variable>();
  readonly #opts: UNetOptions;
  readonly #widths: number[];
  readonly #dropout: number[];
  readonly #prefix: string;
  readonly #scope: string;
  readonly #numClasses: number;
  #bnUpdates: Array<[tf.Variable, tf.Tensor]> = [];

  constructor(options: UNetOptions, context: ModelContext) {
    this.#opts = options;
    this.#prefix = context.name ?? "unet";
    this.#scope = context.scope ?? "";
    this.#numClasses = context.numClasses;
    this.#widths = Array.from({ length: options.depth }, (_, k) => options.base * 2 ** k);
    const d = options.dropout;
    this.#dropout = typeof d === "number"
      ? this.#widths.map(() => d)
      : this.#widths.map((_, k) => d[k] ?? 0);
    try {
      this.#build(options, context);
    } catch (error) {
      // A variable name already taken (a model plugin beside this one that ignores scopes)
      // must not leave the variables made so far registered.
      this.dispose();
      throw error;
    }
  }

  #build(options: UNetOptions, context: ModelContext): void {
    const rng = new Rng(context.seed);
    let c = context.inChannels;
    this.#widths.forEach((w, k) => {
      this.#convBn(rng, `down${k}/conv0`, c, w, 3);
      this.#convBn(rng, `down${k}/conv1`, w, w, 3);
      c = w;
    });
    for (let k = options.depth - 2; k >= 0; k--) {
      const w = this.#widths[k];
      if (options.upsampling === "transpose") {
        this.#var(`up${k}/deconv/kernel`, [2, 2, w, c], heNormal(rng, [2, 2, w, c], 4 * c));
      } else {
        this.#convBn(rng, `up${k}/conv`, c, w, 3);
      }
      this.#convBn(rng, `up${k}/block0`, 2 * w, w, 3);
      this.#convBn(rng, `up${k}/block1`, w, w, 3);
      c = w;
    }
    const n = context.numClasses;
    this.#var("head/kernel", [1, 1, c, n], heNormal(rng, [1, 1, c, n], c));
    this.#var("head/bias", [n], new Float32Array(n));
  }

  get paramCount(): number {
    let n = 0;
    for (const v of this.trainable.values()) n += v.size;
    return n;
  }

  #var(name: string, shape: number[], values: Float32Array, trainable = true): void {
    const full = `${this.#prefix}/${name}`;
    const init = tf.tensor(values, shape, "float32");
    let v: tf.Variable;
    try {
      v = tf.variable(init, trainable, variableName({ scope: this.#scope }, full));
    } finally {
      init.dispose();
    }
    (trainable ? this.trainable : this.state).set(full, v);
  }

  #convBn(rng: Rng, name: string, cin: number, cout: number, k: number): void {
    this.#var(`${name}/kernel`, [k, k, cin, cout], heNormal(rng, [k, k, cin, cout], k * k * cin));
    if (this.#opts.batchNorm) {
      this.#var(`${name}/gamma`, [cout], new Float32Array(cout).fill(1));
      this.#var(`${name}/beta`, [cout], new Float32Array(cout));
      this.#var(`${name}/movingMean`, [cout], new Float32Array(cout), false);
      this.#var(`${name}/movingVar`, [cout], new Float32Array(cout).fill(1), false);
    } else {
      this.#var(`${name}/bias`, [cout], new Float32Array(cout));
    }
  }

  #get(name: string): tf.Variable {
    const full = `${this.#prefix}/${name}`;
    return (this.trainable.get(full) ?? this.state.get(full))!;
  }

  #convBnRelu(x: tf.Tensor4D, name: string, training: boolean, groups?: number[]): tf.Tensor4D {
    if (!training && this.#opts.batchNorm) {
      // Inference: the batch norm folds into the convolution's weights and a bias, and the
      // ReLU into the same kernel (one pass over the output).
      const scale = tf.mul(
        this.#get(`${name}/gamma`),
        tf.rsqrt(tf.add(this.#get(`${name}/movingVar`), BN_EPS)),
      );
      return tf.fused.conv2d({
        x,
        filter: tf.mul(this.#get(`${name}/kernel`), scale) as tf.Tensor4D,
        strides: 1,
        pad: "same",
        bias: tf.sub(this.#get(`${name}/beta`), tf.mul(this.#get(`${name}/movingMean`), scale)),
        activation: "relu",
      });
    }
    const y = tf.conv2d(x, this.#get(`${name}/kernel`) as tf.Tensor4D, 1, "same");
    if (!this.#opts.batchNorm) return tf.relu(tf.add(y, this.#get(`${name}/bias`)));
    const gamma = this.#get(`${name}/gamma`);
    const beta = this.#get(`${name}/beta`);
    const movingMean = this.#get(`${name}/movingMean`);
    const movingVar = this.#get(`${name}/movingVar`);
    let normed: tf.Tensor4D;
    if (training && batchNormReluAvailable()) {
      // One fused kernel (statistics, normalisation, affine, ReLU) with its own gradient.
      const { y: out, mean, variance } = batchNormRelu(
        y,
        gamma as tf.Tensor1D,
        beta as tf.Tensor1D,
        {
          groups: groups !== undefined && groups.length > 1 ? groups : undefined,
          epsilon: BN_EPS,
        },
      );
      const g = groups !== undefined && groups.length > 1 ? groups : [y.shape[0]];
      const count = Math.min(...g) * y.shape[1] * y.shape[2];
      // one kernel per statistic where the backend has it (webgpu), else composed
      const next = bnRunningStatistics(movingMean, movingVar, mean, variance, {
        momentum: this.#opts.bnMomentum,
        count,
      });
      if (next !== null) {
        this.#bnUpdates.push([movingMean, next[0]], [movingVar, next[1]]);
        return out;
      }
      this.#updateRunningStatistics(
        movingMean,
        movingVar,
        tf.mean(mean, 0),
        tf.mean(variance, 0),
        count,
      );
      return out;
    }
    if (training) {
      const { normed: n, mean, variance, count } = groupNorm(y, groups);
      normed = tf.add(tf.mul(n, gamma), beta);
      this.#updateRunningStatistics(movingMean, movingVar, mean, variance, count);
    } else {
      normed = tf.batchNorm(y, movingMean, movingVar, beta, gamma, BN_EPS) as tf.Tensor4D;
    }
    return tf.relu(normed);
  }

  /** Queue the running averages' update from batch statistics over `count` values each. */
  #updateRunningStatistics(
    movingMean: tf.Variable,
    movingVar: tf.Variable,
    mean: tf.Tensor,
    variance: tf.Tensor,
    count: number,
  ): void {
    const m = this.#opts.bnMomentum;
    const unbiased = tf.mul(variance, count / Math.max(count - 1, 1));
    this.#bnUpdates.push(
      [movingMean, tf.add(tf.mul(movingMean, 1 - m), tf.mul(mean, m))],
      [movingVar, tf.add(tf.mul(movingVar, 1 - m), tf.mul(unbiased, m))],
    );
  }

  #upsample(x: tf.Tensor4D, k: number): tf.Tensor4D {
    const [, h, w] = x.shape;
    switch (this.#opts.upsampling) {
      case "nearest":
        return tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w]);
      case "bilinear":
        return tf.image.resizeBilinear(x, [2 * h, 2 * w]);
      case "transpose": {
        const kernel = this.#get(`up${k}/deconv/kernel`) as tf.Tensor4D;
        const [b] = x.shape;
        return tf.conv2dTranspose(x, kernel, [b, 2 * h, 2 * w, kernel.shape[2]], 2, "valid");
      }
    }
  }

  apply(x: tf.Tensor4D, options: ApplyOptions = {}): tf.Tensor4D {
    const training = options.training ?? false;
    const groups = options.groups;
    if (groups !== undefined && groups.reduce((a, b) => a + b, 0) !== x.shape[0]) {
      throw new Error(`U-Net: groups ${groups} do not add up to the batch of ${x.shape[0]}`);
    }
    const levels = this.#opts.depth;
    const factor = 2 ** (levels - 1);
    if (x.shape[1] % factor !== 0 || x.shape[2] % factor !== 0) {
      throw new UserError(
        `U-Net of depth ${levels} needs image sides divisible by ${factor}, got ` +
          `${x.shape[1]}x${x.shape[2]}; set dataset.size to a multiple of ${factor} ` +
          `(or lower model.depth)`,
      );
    }
    this.#bnUpdates = [];
    const logits = tf.tidy(() => {
      const skips: tf.Tensor4D[] = [];
      let h = x;
      for (let k = 0; k < levels; k++) {
        if (k > 0) h = tf.maxPool(h, 2, 2, "valid");
        h = this.#convBnRelu(h, `down${k}/conv0`, training, groups);
        const rate = this.#dropout[k];
        if (training && rate > 0) {
          const seed = options.seed === undefined ? undefined : options.seed * 31 + k;
          h = tf.dropout(h, rate, undefined, seed) as tf.Tensor4D;
        }
        h = this.#convBnRelu(h, `down${k}/conv1`, training, groups);
        skips.push(h);
      }
      skips.pop();
      for (let k = levels - 2; k >= 0; k--) {
        h = this.#upsample(h, k);
        if (this.#opts.upsampling !== "transpose") {
          h = this.#convBnRelu(h, `up${k}/conv`, training, groups);
        }
        h = tf.concat([skips[k], h], 3);
        h = this.#convBnRelu(h, `up${k}/block0`, training, groups);
        h = this.#convBnRelu(h, `up${k}/block1`, training, groups);
      }
      const out = tf.add(
        tf.conv2d(h, this.#get("head/kernel") as tf.Tensor4D, 1, "valid"),
        this.#get("head/bias"),
      ) as tf.Tensor4D;
      // The new running statistics must outlive this tidy; they are assigned below.
      for (const [, value] of this.#bnUpdates) tf.keep(value);
      return out;
    });
    for (const [variable, value] of this.#bnUpdates) {
      variable.assign(value);
      value.dispose();
    }
    this.#bnUpdates = [];
    return logits;
  }

  dispose(): void {
    for (const v of this.trainable.values()) v.dispose();
    for (const v of this.state.values()) v.dispose();
    this.trainable.clear();
    this.state.clear();
  }

  get numClasses(): number {
    return this.#numClasses;
  }
}

/** The U-Net model plugin (`model: { type: unet }`). */
export const unetModel: ModelFactory<UNetOptions> = {
  id: "unet",
  description: "U-Net: depth levels of 2x(conv3x3-BN-ReLU), nearest/bilinear/transpose upsampling",
  options: unetOptions,
  create: (options, context) => new UNet(options, context),
};
