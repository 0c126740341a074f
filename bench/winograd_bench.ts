/**
 * The 3x3 convolutions of the U-Net (forward, input gradient, filter gradient) as Winograd F(2x2, 3x3) against
 * the direct GEMM kernel, by the calling thread's CPU time (`/proc/self/task/<pid>/schedstat`,
 * so that other processes on the machine disturb it little): rounds that alternate the two
 * kernels, the minimum per kernel and shape.
 *
 * ```sh
 * deno run -A bench/winograd_bench.ts [--batch 8] [--base 16]
 *   [--size 128] [--rounds 5] [--threads 1] [--budget 65536]
 * ```
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import {
  setWinogradBudget,
  setWinogradMode,
  setWinogradTile,
} from "../runtime/kernels/wasm_conv.ts";

const args = Object.fromEntries(
  Deno.args.join(" ").split("--").filter((s) => s.trim()).map((s) => {
    const [k, v] = s.trim().split(/\s+/);
    return [k, Number(v)];
  }),
);
const batch = args.batch ?? 8, base = args.base ?? 16, size = args.size ?? 128;
const rounds = args.rounds ?? 5, threads = args.threads ?? 1;
if (args.budget) setWinogradBudget(args.budget);
// --tile 2 / 4: F(2x2, 3x3) / F(4x4, 3x3) for the forward and input gradient (default: by shape;
// the filter gradient is F(2x2) always);
// --against 2: compare it with F(2x2, 3x3) instead of the direct kernel.
const against = args.against ?? 0;
const useMode = (mode: number) => {
  if (mode === 0 && against === 0) return setWinogradMode("off");
  setWinogradMode("on");
  setWinogradTile((mode === 0 ? against : args.tile ?? 0) as 0 | 2 | 4);
};

await initBackend("wasm", { threads });

/** CPU time of the calling thread in ms. */
function threadMs(): number {
  const text = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/schedstat`);
  return Number(text.split(" ")[0]) / 1e6;
}

/** The U-Net's 3x3 convolutions: [spatial, in, out] (encoder, then decoder after the concat). */
const shapes: [number, number, number][] = [];
for (let d = 0, s = size, c = base; d < 5; d++, s /= 2, c *= 2) {
  if (d > 0) shapes.push([s, c / 2, c]);
  shapes.push([s, c, c]);
  if (d < 4) shapes.push([s, 2 * c, c]);
}

console.log(
  `batch ${batch}, threads ${threads}; thread CPU ms per call, min of ${rounds} rounds` +
    " (direct / Winograd)",
);
const totalOld = [0, 0, 0], totalNew = [0, 0, 0];
for (const [s, ci, co] of shapes) {
  const x = tf.randomNormal([batch, s, s, ci], 0, 1, "float32", 1) as tf.Tensor4D;
  const f = tf.randomNormal([3, 3, ci, co], 0, 1, "float32", 2) as tf.Tensor4D;
  const dy = tf.randomNormal([batch, s, s, co], 0, 1, "float32", 3) as tf.Tensor4D;
  const reps = Math.max(1, Math.round((args.flop ?? 6e9) / (batch * s * s * ci * co * 18)));
  const ops = [
    () => tf.conv2d(x, f, 1, "same"),
    () => tf.conv2dTranspose(dy, f, [batch, s, s, ci], 1, "same"),
    () =>
      tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, {
        strides: 1,
        pad: "same",
        dataFormat: "NHWC",
        filterShape: [3, 3, ci, co],
      }) as tf.Tensor,
  ];
  const best = ops.map(() => [Infinity, Infinity]); // [op][mode]
  for (let r = 0; r < rounds + 1; r++) {
    for (let op = 0; op < ops.length; op++) {
      for (const mode of [0, 1]) {
        useMode(mode);
        const t = threadMs();
        for (let k = 0; k < reps; k++) ops[op]().dispose();
        const ms = (threadMs() - t) / reps;
        if (r > 0) best[op][mode] = Math.min(best[op][mode], ms);
      }
    }
  }
  setWinogradMode("auto");
  setWinogradTile(0);
  const line = ["fwd", "dx", "dw"].map((name, op) =>
    `${name} ${best[op][0].toFixed(2)} / ${best[op][1].toFixed(2)} (${
      (best[op][0] / best[op][1]).toFixed(2)
    }x)`
  );
  console.log(`${s}x${s} ${ci}->${co}: ${line.join("  ")}`);
  for (let op = 0; op < ops.length; op++) {
    totalOld[op] += best[op][0];
    totalNew[op] += best[op][1];
  }
  tf.dispose([x, f, dy]);
}
console.log(
  `total ${
    ["fwd", "dx", "dw"].map((name, op) =>
      `${name} ${totalOld[op].toFixed(1)} / ${totalNew[op].toFixed(1)} ms`
    ).join(", ")
  }`,
);
Deno.exit(0);
