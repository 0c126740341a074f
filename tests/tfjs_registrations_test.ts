/**
 * runtime/tfjs_registrations.js (tfjs-core's gradients and chained ops, bundled so that the union
 * package `@tensorflow/tfjs` need not be downloaded) registers every gradient tfjs-core ships,
 * and the chained ops.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tf } from "../deps.ts";
import { npmCacheDir } from "../app/launcher.ts";
import { assertClose, useWasm } from "./_helpers.ts";

/** tfjs-core 4.22.0's gradient sources in the npm cache, which the comparison reads. */
const GRADIENTS = join(
  (await npmCacheDir()) ?? "",
  "registry.npmjs.org/@tensorflow/tfjs-core/4.22.0/dist/gradients",
);
const haveGradients = await Deno.stat(GRADIENTS).then((s) => s.isDirectory, () => false);
if (!haveGradients) {
  console.log(`ignored the gradient comparison: tfjs-core's sources are not in ${GRADIENTS}`);
}

Deno.test({
  name: "every gradient config of tfjs-core 4.22.0 is registered",
  // the expected list is read from tfjs-core's own sources in the npm cache
  ignore: !haveGradients,
  fn: async () => {
    const registry = (globalThis as unknown as { _tfGlobals: Map<string, Map<string, unknown>> })
      ._tfGlobals.get("gradRegistry")!;
    const expected = new Set<string>();
    for await (const e of Deno.readDir(GRADIENTS)) {
      if (!e.name.endsWith("_grad.js")) continue;
      const m = /kernelName: (\w+),/.exec(await Deno.readTextFile(join(GRADIENTS, e.name)));
      if (m) expected.add(m[1]);
    }
    assert.ok(expected.size > 90, `${expected.size} gradient files`);
    assert.deepEqual([...registry.keys()].sort(), [...expected].sort());
  },
});

Deno.test("chained ops are registered on tfjs-core's tensor class", async () => {
  await useWasm();
  const t = tf.tensor([3, 1, 2]);
  assert.equal((await t.min().data())[0], 1);
  assert.equal((await t.square().sum().data())[0], 14);
  t.dispose();
});

Deno.test("bundled gradients match finite differences (conv, pooling, softmax, slicing)", async () => {
  await useWasm();
  const x = tf.randomNormal([1, 6, 6, 2], 0, 1, "float32", 1) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, 2, 3], 0, 1, "float32", 2) as tf.Tensor4D;
  const f = (x: tf.Tensor) =>
    tf.sum(tf.mul(
      tf.logSoftmax(tf.maxPool(tf.relu(tf.conv2d(x as tf.Tensor4D, w, 1, "same")), 2, 2, "same")),
      tf.abs(tf.slice(x, [0, 0, 0, 0], [1, 3, 3, 1])),
    )) as tf.Scalar;
  const g = await tf.grad(f)(x).data();
  const base = await x.data();
  for (const i of [0, 7, 20, 41, 71]) {
    const e = 1e-2;
    const plus = base.slice();
    plus[i] += e;
    const minus = base.slice();
    minus[i] -= e;
    const fp = (await f(tf.tensor4d(plus, x.shape)).data())[0];
    const fm = (await f(tf.tensor4d(minus, x.shape)).data())[0];
    assertClose(g[i], (fp - fm) / (2 * e), 2e-2, `d/dx[${i}]`);
  }
});
