/**
 * The U-Net plugin on tiny inputs: inference with the batch norm folded into the convolutions
 * equals a plain forward pass that normalises with the running statistics; the running
 * statistics follow PyTorch's momentum rule with the unbiased batch variance (by hand, joint and
 * per group); per-group batch norm gives each group the output it would get alone; every
 * upsampling mode has the right variables, shapes and values. Each check runs on both kernel
 * paths (`kernels: custom`, the fused batch-norm + ReLU kernel, and `builtin`, plain tf ops).
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import type { SegmentationModel } from "../core/model.ts";
import { initBackend } from "../runtime/backend.ts";
import { batchNormReluAvailable } from "../runtime/kernels/batch_norm_relu.ts";
import { unetModel, type UNetOptions, unetOptions } from "../plugins/models/unet.ts";
import { assertClose } from "./_helpers.ts";

const EPS = 1e-5;
const MODES = ["custom", "builtin"] as const;

function build(options: Partial<UNetOptions>, numClasses = 3, inChannels = 1): SegmentationModel {
  return unetModel.create(unetOptions.parse(options), { inChannels, numClasses, seed: 7 });
}

/** A variable of the model by its name after `unet/`. */
function variable(model: SegmentationModel, name: string): tf.Variable {
  const v = model.trainable.get(`unet/${name}`) ?? model.state.get(`unet/${name}`);
  assert.ok(v !== undefined, `no variable ${name}`);
  return v;
}

/** Seeded values in [lo, hi). */
function uniform(shape: number[], seed: number, lo = -1, hi = 1): tf.Tensor {
  return tf.randomUniform(shape, lo, hi, "float32", seed);
}

/** Give every batch-norm parameter and running statistic a value away from its initial one. */
function randomizeBatchNorm(model: SegmentationModel): void {
  let seed = 100;
  for (const [name, v] of [...model.trainable, ...model.state]) {
    const range: [number, number] | undefined = name.endsWith("/gamma")
      ? [0.5, 1.5]
      : name.endsWith("/beta")
      ? [-0.3, 0.3]
      : name.endsWith("/movingMean")
      ? [-0.5, 0.5]
      : name.endsWith("/movingVar")
      ? [0.2, 2]
      : undefined;
    if (range === undefined) continue;
    const value = uniform(v.shape, seed++, ...range);
    v.assign(value);
    value.dispose();
  }
}

/**
 * An independent inference forward pass: each conv3x3 followed by batch norm with the running
 * statistics, `(y - mean) / sqrt(var + eps) * gamma + beta`, not folded, then ReLU; the U-Net
 * wiring (max pool down, upsample + conv up, skip first in the concatenation, 1x1 head).
 */
function reference(model: SegmentationModel, x: tf.Tensor4D, o: UNetOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const v = (n: string) => variable(model, n);
    const block = (h: tf.Tensor4D, name: string) => {
      const y = tf.conv2d(h, v(`${name}/kernel`) as tf.Tensor4D, 1, "same");
      const bn = o.batchNorm
        ? tf.add(
          tf.mul(
            tf.div(
              tf.sub(y, v(`${name}/movingMean`)),
              tf.sqrt(tf.add(v(`${name}/movingVar`), EPS)),
            ),
            v(`${name}/gamma`),
          ),
          v(`${name}/beta`),
        )
        : tf.add(y, v(`${name}/bias`));
      return tf.relu(bn) as tf.Tensor4D;
    };
    const skips: tf.Tensor4D[] = [];
    let h = x;
    for (let k = 0; k < o.depth; k++) {
      if (k > 0) h = tf.maxPool(h, 2, 2, "valid");
      h = block(block(h, `down${k}/conv0`), `down${k}/conv1`);
      skips.push(h);
    }
    for (let k = o.depth - 2; k >= 0; k--) {
      const [b, hh, ww] = h.shape;
      if (o.upsampling === "transpose") {
        const kernel = v(`up${k}/deconv/kernel`) as tf.Tensor4D;
        h = tf.conv2dTranspose(h, kernel, [b, 2 * hh, 2 * ww, kernel.shape[2]], 2, "valid");
      } else {
        h = o.upsampling === "nearest"
          ? tf.image.resizeNearestNeighbor(h, [2 * hh, 2 * ww])
          : tf.image.resizeBilinear(h, [2 * hh, 2 * ww]);
        h = block(h, `up${k}/conv`);
      }
      h = block(block(tf.concat([skips[k], h], 3), `up${k}/block0`), `up${k}/block1`);
    }
    return tf.add(tf.conv2d(h, v("head/kernel") as tf.Tensor4D, 1, "valid"), v("head/bias"));
  });
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

for (const kernels of MODES) {
  Deno.test(`U-Net (${kernels} kernels): inference folds the batch norm and equals normalising with the running statistics, for every upsampling mode`, async () => {
    await initBackend("cpu", { kernels });
    for (const upsampling of ["nearest", "bilinear", "transpose"] as const) {
      const options = unetOptions.parse({ base: 2, depth: 3, upsampling });
      const model = build(options);
      try {
        randomizeBatchNorm(model);
        const x = uniform([2, 8, 8, 1], 1) as tf.Tensor4D;
        const before = tf.memory().numTensors;
        const out = model.apply(x, { training: false });
        assert.deepEqual(out.shape, [2, 8, 8, 3]);
        // Nothing left behind but the output, and no running statistic changed.
        assert.equal(tf.memory().numTensors, before + 1);
        const expected = reference(model, x, options);
        const scale = tf.tidy(() => tf.max(tf.abs(expected)).dataSync()[0]);
        assert.ok(maxAbsDiff(out, expected) <= 1e-4 * Math.max(scale, 1), upsampling);
        tf.dispose([x, out, expected]);
      } finally {
        model.dispose();
      }
    }
  });

  Deno.test(`U-Net (${kernels} kernels): running statistics move by the momentum toward the batch mean and unbiased variance (by hand)`, async () => {
    await initBackend("cpu", { kernels });
    assert.equal(batchNormReluAvailable(), kernels === "custom");
    // One level, one channel: conv0's kernel passes the image through (centre tap 1), so its
    // batch statistics are those of the eight pixels 1..8.
    const pixels = [1, 2, 3, 4, 5, 6, 7, 8];
    const cases: Array<{ momentum: number; groups?: number[]; mean: number; variance: number }> = [
      // joint: mean 4.5, unbiased variance sum((x - 4.5)^2) / 7 = 42 / 7 = 6
      { momentum: 0.1, mean: 4.5, variance: 6 },
      { momentum: 0.3, mean: 4.5, variance: 6 },
      // per group (1..4 and 5..8): means 2.5 and 6.5 (average 4.5), unbiased variances
      // 5 / 3 each (n = 4 pixels per group)
      { momentum: 0.1, groups: [1, 1], mean: 4.5, variance: 5 / 3 },
    ];
    for (const c of cases) {
      const model = build({ base: 1, depth: 1, bnMomentum: c.momentum }, 2);
      try {
        const kernel = new Float32Array(9);
        kernel[4] = 1;
        variable(model, "down0/conv0/kernel").assign(tf.tensor4d(kernel, [3, 3, 1, 1]));
        const x = tf.tensor4d(pixels, [2, 2, 2, 1]);
        tf.dispose(model.apply(x, { training: true, groups: c.groups }));
        const m = c.momentum;
        const mean = variable(model, "down0/conv0/movingMean").dataSync()[0];
        const variance = variable(model, "down0/conv0/movingVar").dataSync()[0];
        assertClose(mean, (1 - m) * 0 + m * c.mean, 1e-5, `mean ${JSON.stringify(c)}`);
        assertClose(variance, (1 - m) * 1 + m * c.variance, 1e-5, `var ${JSON.stringify(c)}`);
        // A second step moves them again from there.
        tf.dispose(model.apply(x, { training: true, groups: c.groups }));
        assertClose(
          variable(model, "down0/conv0/movingMean").dataSync()[0],
          (1 - m) * mean + m * c.mean,
          1e-5,
        );
        // Inference changes nothing.
        tf.dispose(model.apply(x, { training: false }));
        assertClose(
          variable(model, "down0/conv0/movingMean").dataSync()[0],
          (1 - m) * mean + m * c.mean,
          1e-5,
        );
        x.dispose();
      } finally {
        model.dispose();
      }
    }
  });

  Deno.test(`U-Net (${kernels} kernels): per-group batch norm gives each group the output it gets alone`, async () => {
    await initBackend("cpu", { kernels });
    const model = build({ base: 2, depth: 2 });
    try {
      randomizeBatchNorm(model);
      const a = uniform([1, 4, 4, 1], 11) as tf.Tensor4D;
      const b = uniform([3, 4, 4, 1], 12, 0, 3) as tf.Tensor4D;
      const c = uniform([1, 4, 4, 1], 13, -2, 0) as tf.Tensor4D;
      const d = uniform([3, 4, 4, 1], 14, -1, 2) as tf.Tensor4D;
      // Unequal groups (split path) and equal groups (reshape path).
      for (const parts of [[a, b, c], [b, d]]) {
        tf.tidy(() => {
          const alone = tf.concat(parts.map((t) => model.apply(t, { training: true })));
          const groups = parts.map((t) => t.shape[0]);
          const grouped = model.apply(tf.concat(parts), { training: true, groups });
          assert.ok(maxAbsDiff(grouped, alone) < 1e-4, `groups ${groups}`);
          // One joint group differs: its statistics mix the groups.
          const joint = model.apply(tf.concat(parts), { training: true });
          assert.ok(maxAbsDiff(joint, alone) > 1e-2, `joint ${groups}`);
        });
      }
      assert.throws(() => model.apply(a, { training: true, groups: [2] }), /do not add up/);
      tf.dispose([a, b, c, d]);
    } finally {
      model.dispose();
    }
  });
}

Deno.test("U-Net upsampling modes: their variables, output shapes, and what the upsampling does to a tiny map", async () => {
  await initBackend("cpu");
  for (const upsampling of ["nearest", "bilinear", "transpose"] as const) {
    const model = build({ base: 2, depth: 3, upsampling }, 4);
    try {
      const names = [...model.trainable.keys()];
      assert.equal(names.includes("unet/up0/deconv/kernel"), upsampling === "transpose");
      assert.equal(names.includes("unet/up0/conv/kernel"), upsampling !== "transpose");
      for (const [h, w] of [[4, 4], [8, 12]]) {
        const shape = tf.tidy(() => model.apply(tf.zeros([2, h, w, 1]), { training: false }).shape);
        assert.deepEqual(shape, [2, h, w, 4], `${upsampling} ${h}x${w}`);
      }
      assert.throws(() => tf.tidy(() => model.apply(tf.zeros([1, 6, 6, 1]))), /divisible by 4/);
    } finally {
      model.dispose();
    }
  }
  // What each mode does to [[1, 2], [3, 4]] (by hand): nearest repeats each pixel in a 2x2
  // block, bilinear (align corners off, half-pixel centres off, as tf.image) interpolates
  // from the top-left corner, a 2x2 stride-2 transposed convolution scales the kernel by each
  // pixel into its block.
  const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
  assert.deepEqual(
    [...tf.image.resizeNearestNeighbor(x, [4, 4]).dataSync()],
    [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4],
  );
  assert.deepEqual(
    [...tf.image.resizeBilinear(x, [4, 4]).dataSync()],
    [1, 1.5, 2, 2, 2, 2.5, 3, 3, 3, 3.5, 4, 4, 3, 3.5, 4, 4],
  );
  const k = tf.tensor4d([1, 10, 100, 1000], [2, 2, 1, 1]);
  assert.deepEqual(
    [...tf.conv2dTranspose(x, k, [1, 4, 4, 1], 2, "valid").dataSync()],
    [1, 10, 2, 20, 100, 1000, 200, 2000, 3, 30, 4, 40, 300, 3000, 400, 4000],
  );
  tf.dispose([x, k]);
});

Deno.test("U-Net takes the input channels it is built for, and frees every variable", async () => {
  await initBackend("cpu");
  const before = tf.memory().numTensors;
  const model = build({ base: 2, depth: 2 }, 2, 3);
  assert.deepEqual(variable(model, "down0/conv0/kernel").shape, [3, 3, 3, 2]);
  const shape = tf.tidy(() => model.apply(tf.zeros([1, 4, 4, 3])).shape);
  assert.deepEqual(shape, [1, 4, 4, 2]);
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
});
