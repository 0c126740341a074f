// A model plugin: a small fully convolutional network, two conv3x3 -> batch norm -> ReLU
// blocks and a 1x1 head, that keeps the model contract (docs/plugins.md, core/model.ts):
// variables keyed `<name>/...` with tfjs names in the run's scope, batch norm with running
// statistics (updated in training mode, used at inference) and per-group statistics.
// Use it from a recipe with `plugins: ["./tiny_model.ts"]` and `model: { type: tiny-fcn }`.
// Outside this repository, import mod.ts by its URL instead of "../mod.ts".
import {
  type ApplyOptions,
  type ModelContext,
  type ModelFactory,
  models,
  type OptionsSchema,
  Rng,
  type SegmentationModel,
  type Tensor,
  type Tensor4D,
  tf,
  type Variable,
  variableName,
  z,
} from "../mod.ts";

/** Options of the `tiny-fcn` model. */
export interface TinyFcnOptions {
  /** Channels of the two hidden blocks. */
  width: number;
  /** Momentum of the running statistics (PyTorch's convention). */
  momentum: number;
}

const options: OptionsSchema<TinyFcnOptions> = z.object({
  width: z.number().int().min(1).max(256).default(8),
  momentum: z.number().gt(0).lt(1).default(0.1),
}).strict();

const EPS = 1e-5;

class TinyFcn implements SegmentationModel {
  readonly trainable = new Map<string, Variable>();
  readonly state = new Map<string, Variable>();
  readonly #opts: TinyFcnOptions;
  readonly #name: string;

  constructor(opts: TinyFcnOptions, context: ModelContext) {
    this.#opts = opts;
    this.#name = context.name ?? "tiny-fcn";
    const rng = new Rng(context.seed);
    // He-normal weights from the seed: the same seed gives the same network.
    const he = (shape: number[], fanIn: number) =>
      Float32Array.from(
        { length: shape.reduce((a, b) => a * b) },
        () => rng.normal() * Math.sqrt(2 / fanIn),
      );
    const add = (key: string, shape: number[], values: Float32Array, trainable = true) => {
      const full = `${this.#name}/${key}`;
      const init = tf.tensor(values, shape);
      // The key is the model's own name of the variable (checkpoints, mean teacher); the tfjs
      // name adds the run's scope, so that two runs can live in one process.
      (trainable ? this.trainable : this.state).set(
        full,
        tf.variable(init, trainable, variableName(context, full)),
      );
      init.dispose();
    };
    try {
      const w = opts.width;
      let c = context.inChannels;
      for (const block of ["block0", "block1"]) {
        add(`${block}/kernel`, [3, 3, c, w], he([3, 3, c, w], 9 * c));
        add(`${block}/gamma`, [w], new Float32Array(w).fill(1));
        add(`${block}/beta`, [w], new Float32Array(w));
        add(`${block}/movingMean`, [w], new Float32Array(w), false);
        add(`${block}/movingVar`, [w], new Float32Array(w).fill(1), false);
        c = w;
      }
      add("head/kernel", [1, 1, w, context.numClasses], he([1, 1, w, context.numClasses], w));
      add("head/bias", [context.numClasses], new Float32Array(context.numClasses));
    } catch (error) {
      this.dispose(); // a failed build must not leave variables behind
      throw error;
    }
  }

  get paramCount(): number {
    let n = 0;
    for (const v of this.trainable.values()) n += v.size;
    return n;
  }

  #v(key: string): Variable {
    const full = `${this.#name}/${key}`;
    return (this.trainable.get(full) ?? this.state.get(full))!;
  }

  apply(x: Tensor4D, opts: ApplyOptions = {}): Tensor4D {
    const training = opts.training ?? false;
    const updates: Array<[Variable, Tensor]> = [];
    const logits = tf.tidy(() => {
      let h = x;
      for (const block of ["block0", "block1"]) {
        const y = tf.conv2d(h, this.#v(`${block}/kernel`) as Tensor4D, 1, "same");
        const mean = this.#v(`${block}/movingMean`), variance = this.#v(`${block}/movingVar`);
        let normed: Tensor;
        if (training) {
          // Batch statistics of each group (the whole batch when there are no groups).
          const parts = tf.split(y, opts.groups ?? [y.shape[0]], 0);
          const stats = parts.map((p) => tf.moments(p, [0, 1, 2]));
          normed = tf.concat(
            parts.map((p, i) =>
              tf.div(tf.sub(p, stats[i].mean), tf.sqrt(tf.add(stats[i].variance, EPS)))
            ),
            0,
          );
          // Running statistics: the groups' mean statistics, unbiased variance.
          const n = Math.min(...parts.map((p) => p.shape[0])) * y.shape[1] * y.shape[2];
          const m = this.#opts.momentum;
          const batchMean = tf.mean(tf.stack(stats.map((s) => s.mean)), 0);
          const batchVar = tf.mul(
            tf.mean(tf.stack(stats.map((s) => s.variance)), 0),
            n / Math.max(n - 1, 1),
          );
          updates.push(
            [mean, tf.keep(tf.add(tf.mul(mean, 1 - m), tf.mul(batchMean, m)))],
            [variance, tf.keep(tf.add(tf.mul(variance, 1 - m), tf.mul(batchVar, m)))],
          );
        } else {
          normed = tf.div(tf.sub(y, mean), tf.sqrt(tf.add(variance, EPS)));
        }
        h = tf.relu(
          tf.add(tf.mul(normed, this.#v(`${block}/gamma`)), this.#v(`${block}/beta`)),
        ) as Tensor4D;
      }
      return tf.add(
        tf.conv2d(h, this.#v("head/kernel") as Tensor4D, 1, "valid"),
        this.#v("head/bias"),
      ) as Tensor4D;
    });
    // Assigned outside the tidy, and outside what the gradient sees.
    for (const [variable, value] of updates) {
      variable.assign(value);
      value.dispose();
    }
    return logits;
  }

  dispose(): void {
    for (const v of [...this.trainable.values(), ...this.state.values()]) v.dispose();
    this.trainable.clear();
    this.state.clear();
  }
}

/** The `tiny-fcn` model plugin. */
export const tinyFcnModel: ModelFactory<TinyFcnOptions> = {
  id: "tiny-fcn",
  description: "Two conv3x3-BN-ReLU blocks and a 1x1 head, no downsampling (an example)",
  options,
  create: (opts, context) => new TinyFcn(opts, context),
};

if (!models.has(tinyFcnModel.id)) models.register(tinyFcnModel);
