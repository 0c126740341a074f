/**
 * Winograd F(2x2, 3x3) and F(4x4, 3x3) for the 3x3 stride-1 convolutions on wasm
 * (`wasm_winograd.ts`): forward (plain and fused with bias and ReLU), input gradient and filter
 * gradient against the cpu backend on odd shapes, which kernel runs for which shape, and the
 * gradients of a small conv net against finite differences.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { useWasm } from "./_helpers.ts";
import {
  type KernelCall,
  runCallLists,
  setWinogradMode,
  setWinogradTile,
  useWinograd,
  winogradCallCount,
  type WinogradMode,
  winogradTileCount,
  winogradTileFor,
} from "../runtime/kernels/wasm_conv.ts";
import { F4, G2 } from "../runtime/kernels/wasm_winograd.ts";
import { winogradFilter, winogradFilterGrad } from "./_winograd_reference.ts";
import { wasmOffset } from "../runtime/tfjs_internals.ts";

await useWasm();

type Shape4 = [number, number, number, number];
type Pad = "same" | "valid" | [[0, 0], [number, number], [number, number], [0, 0]];

function normal(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomNormal(shape, 0, 1, "float32", seed).dataSync() as Float32Array);
}

/** Runs `f` on cpu, then on wasm under `mode`; max |wasm - cpu| <= tol * max |cpu| per output. */
async function agree(
  f: () => tf.Tensor[],
  tol: number,
  mode: WinogradMode = "on",
): Promise<{ fwd: number; dx: number; dw: number }> {
  await tf.setBackend("cpu");
  const cpu = tf.tidy(() => f().map((t) => t.dataSync() as Float32Array));
  await tf.setBackend("wasm");
  setWinogradMode(mode);
  const before = winogradCallCount();
  let wasm: Float32Array[];
  try {
    wasm = tf.tidy(() => f().map((t) => t.dataSync() as Float32Array));
  } finally {
    setWinogradMode("auto");
  }
  const after = winogradCallCount();
  cpu.forEach((expected, k) => {
    let scale = 0, err = 0;
    for (let i = 0; i < expected.length; i++) {
      scale = Math.max(scale, Math.abs(expected[i]));
      err = Math.max(err, Math.abs(wasm[k][i] - expected[i]));
    }
    assert.ok(scale > 0, `output ${k}: the reference is all zeros`);
    assert.ok(err <= tol * scale, `output ${k}: max abs error ${err} exceeds ${tol} * ${scale}`);
  });
  return { fwd: after.fwd - before.fwd, dx: after.dx - before.dx, dw: after.dw - before.dw };
}

Deno.test("by default the U-Net's 3x3 convolutions and both their gradients run as Winograd", () => {
  const before = winogradCallCount();
  tf.tidy(() => {
    const x = tf.randomNormal([2, 16, 16, 16], 0, 1, "float32", 1) as tf.Tensor4D;
    const f = tf.randomNormal([3, 3, 16, 32], 0, 1, "float32", 2) as tf.Tensor4D;
    const loss = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"));
    tf.grads(loss)([x, f]).forEach((g) => g.dataSync());
  });
  const after = winogradCallCount();
  assert.equal(after.fwd - before.fwd, 1);
  assert.equal(after.dx - before.dx, 1);
  assert.equal(after.dw - before.dw, 1);
  // and at 32x32 all three as F(4x4, 3x3)
  const tiles = winogradTileCount();
  tf.tidy(() => {
    const x = tf.randomNormal([1, 32, 32, 16], 0, 1, "float32", 1) as tf.Tensor4D;
    const f = tf.randomNormal([3, 3, 16, 16], 0, 1, "float32", 2) as tf.Tensor4D;
    const loss = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"));
    tf.grads(loss)([x, f]).forEach((g) => g.dataSync());
  });
  assert.equal(winogradTileCount()[4] - tiles[4], 3);
  assert.equal(winogradTileCount()[2] - tiles[2], 0);
});

interface Case {
  x: Shape4;
  co: number;
  pad: Pad;
}

// Reduction channels a multiple of 4 (8, 12, 20: odd multiples too), outputs of 8; odd and even
// image sizes, batch 1 and more, 'same', 'valid' and uneven explicit padding.
const cases: Case[] = [
  { x: [1, 7, 9, 8], co: 8, pad: "same" },
  { x: [2, 9, 7, 12], co: 16, pad: "same" },
  { x: [3, 6, 6, 16], co: 24, pad: "same" },
  { x: [2, 11, 5, 20], co: 8, pad: "valid" },
  { x: [1, 8, 10, 8], co: 16, pad: [[0, 0], [2, 0], [0, 1], [0, 0]] },
  { x: [5, 17, 13, 32], co: 40, pad: "same" },
];

for (const c of cases) {
  const name = `${c.x.join("x")} -> ${c.co} channels, ${
    typeof c.pad === "string" ? c.pad : JSON.stringify(c.pad.slice(1, 3))
  } padding`;
  Deno.test(`Winograd conv2d and both its gradients match cpu (${name})`, async () => {
    const fShape: Shape4 = [3, 3, c.x[3], c.co];
    const xv = normal(c.x, 1), fv = normal(fShape, 2);
    const used = await agree(() => {
      const x = tf.tensor4d(xv, c.x), f = tf.tensor4d(fv, fShape);
      const y = tf.conv2d(x, f, 1, c.pad);
      const w = tf.randomNormal(y.shape, 0, 1, "float32", 3);
      const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, c.pad), w))
      )([x, f]);
      return [y, dx, df];
    }, 1e-5);
    // the forward ran as Winograd, and the input gradient where its kernel takes the shape
    assert.ok(used.fwd >= 1, "the forward did not run as Winograd");
    if (c.x[3] % 8 === 0) assert.ok(used.dx >= 1, "dx was not Winograd");
    assert.equal(used.dw, 1, "the filter gradient was not Winograd");
  });
}

// F(4x4, 3x3): its larger transform coefficients lose more precision, up to ~1.1e-5 of the
// largest output at 256 reduction channels (F(2x2): ~2e-6) and ~1.7e-5 for the filter gradient
// of 12x64x64x16 (F(2x2): ~4e-6), hence 3e-5 here.
for (
  const c of [
    ...cases,
    { x: [1, 16, 16, 256] as Shape4, co: 128, pad: "same" as Pad },
    { x: [12, 64, 64, 16] as Shape4, co: 16, pad: "same" as Pad },
  ]
) {
  const name = `${c.x.join("x")} -> ${c.co} channels, ${
    typeof c.pad === "string" ? c.pad : JSON.stringify(c.pad.slice(1, 3))
  } padding`;
  Deno.test(`Winograd F(4x4, 3x3) conv2d and both its gradients match cpu (${name})`, async () => {
    const fShape: Shape4 = [3, 3, c.x[3], c.co];
    const xv = normal(c.x, 1), fv = normal(fShape, 2);
    setWinogradTile(4);
    const before = winogradTileCount();
    try {
      const used = await agree(() => {
        const x = tf.tensor4d(xv, c.x), f = tf.tensor4d(fv, fShape);
        const y = tf.conv2d(x, f, 1, c.pad);
        const w = tf.randomNormal(y.shape, 0, 1, "float32", 3);
        const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, c.pad), w))
        )([x, f]);
        return [y, dx, df];
      }, 3e-5);
      assert.ok(used.fwd >= 1, "the forward did not run as Winograd");
      if (c.x[3] % 8 === 0) assert.ok(used.dx >= 1, "dx was not Winograd");
      assert.equal(used.dw, 1, "the filter gradient was not Winograd");
      assert.equal(winogradTileCount()[4] - before[4], used.fwd + used.dx + used.dw);
    } finally {
      setWinogradTile(0);
    }
  });
}

Deno.test("Winograd F(4x4, 3x3) fused conv2d with bias and ReLU matches cpu", async () => {
  const xv = normal([2, 9, 11, 8], 4), fv = normal([3, 3, 8, 16], 5), bv = normal([16], 6);
  setWinogradTile(4);
  try {
    const used = await agree(() => {
      const x = tf.tensor4d(xv, [2, 9, 11, 8]), f = tf.tensor4d(fv, [3, 3, 8, 16]);
      const bias = tf.tensor1d(bv);
      return [
        tf.fused.conv2d({ x, filter: f, strides: 1, pad: "same", bias, activation: "relu" }),
        tf.fused.conv2d({ x, filter: f, strides: 1, pad: "valid", bias }),
      ];
    }, 3e-5);
    assert.equal(used.fwd, 2);
  } finally {
    setWinogradTile(0);
  }
});

Deno.test("Winograd fused conv2d with bias and ReLU matches cpu", async () => {
  const xv = normal([2, 7, 6, 8], 4), fv = normal([3, 3, 8, 16], 5), bv = normal([16], 6);
  const used = await agree(() => {
    const x = tf.tensor4d(xv, [2, 7, 6, 8]), f = tf.tensor4d(fv, [3, 3, 8, 16]);
    const bias = tf.tensor1d(bv);
    return [
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: "same", bias, activation: "relu" }),
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: "valid", bias }),
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: "same", activation: "relu" }),
    ];
  }, 1e-5);
  assert.equal(used.fwd, 3);
});

Deno.test("Winograd F(2x2, 3x3) keeps 1e-5 at U-Net channel counts (256 -> 128 over 16x16)", async () => {
  const xv = normal([1, 16, 16, 256], 7), fv = normal([3, 3, 256, 128], 8);
  await agree(() => {
    const x = tf.tensor4d(xv, [1, 16, 16, 256]), f = tf.tensor4d(fv, [3, 3, 256, 128]);
    const y = tf.conv2d(x, f, 1, "same");
    const w = tf.randomNormal(y.shape, 0, 1, "float32", 9);
    const loss = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"), w));
    return [y, ...tf.grads(loss)([x, f])];
  }, 1e-5);
});

Deno.test("Winograd runs only for 3x3 filters, channels it tiles, and (auto) images from 4x4", async () => {
  // off: never; on: any 3x3 with reduction channels % 4 and outputs % 8
  setWinogradMode("off");
  assert.equal(useWinograd("fwd", 8, 128, 128, 16, 16), false);
  setWinogradMode("on");
  assert.equal(useWinograd("fwd", 8, 8, 8, 256, 256), true);
  assert.equal(useWinograd("fwd", 8, 128, 128, 3, 16), false); // the first layer: 3 inputs
  assert.equal(useWinograd("fwd", 8, 128, 128, 16, 4), false); // 4 outputs
  setWinogradMode("auto");
  assert.equal(useWinograd("fwd", 8, 128, 128, 16, 16), true);
  assert.equal(useWinograd("dx", 8, 128, 128, 16, 16), true);
  assert.equal(useWinograd("fwd", 8, 8, 8, 256, 256), true);
  assert.equal(useWinograd("dx", 4, 4, 4, 256, 256), true);
  assert.equal(useWinograd("fwd", 4, 2, 2, 256, 256), false); // below 4x4: the direct kernel
  assert.equal(useWinograd("fwd", 4, 3, 9, 16, 16), false);
  // F(4x4, 3x3) from 32x32 up, F(2x2, 3x3) below
  assert.equal(winogradTileFor(128, 128), 4);
  assert.equal(winogradTileFor(32, 33), 4);
  assert.equal(winogradTileFor(16, 16), 2);
  assert.equal(winogradTileFor(64, 31), 2);
  // a 1x1 and a 5x5 convolution never run as Winograd, a 3x3 one with 1 input channel neither
  const xv = normal([2, 9, 9, 8], 9);
  for (const [k, ci] of [[1, 8], [5, 8], [3, 1]]) {
    const fv = normal([k, k, ci, 8], 10);
    const used = await agree(
      () => {
        const x = tf.tensor4d(xv.subarray(0, 2 * 81 * ci), [2, 9, 9, ci]);
        const f = tf.tensor4d(fv, [k, k, ci, 8]);
        return [tf.conv2d(x, f, 1, "same")];
      },
      1e-5,
      "auto",
    );
    assert.deepEqual(used, { fwd: 0, dx: 0, dw: 0 }, `${k}x${k}, ${ci} input channels`);
  }
});

Deno.test("gradients of a small conv net on Winograd match finite differences", async () => {
  await tf.setBackend("wasm");
  setWinogradMode("on");
  try {
    const x = tf.tensor4d(normal([2, 7, 6, 4], 11), [2, 7, 6, 4]);
    const f1 = tf.tensor4d(normal([3, 3, 4, 8], 12).map((v) => 0.3 * v), [3, 3, 4, 8]);
    const f2 = tf.tensor4d(normal([3, 3, 8, 8], 13).map((v) => 0.3 * v), [3, 3, 8, 8]);
    const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.tidy(() => {
        const h = tf.tanh(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"));
        return tf.sum(tf.square(tf.conv2d(h, c as tf.Tensor4D, 1, "same")));
      });
    const before = winogradCallCount();
    const grads = tf.grads(loss)([x, f1, f2]);
    const after = winogradCallCount();
    assert.ok(
      after.fwd > before.fwd && after.dx > before.dx && after.dw > before.dw,
      "Winograd was not in use",
    );
    const inputs = [x, f1, f2];
    for (let which = 0; which < 3; which++) {
      const g = grads[which].dataSync();
      const values = inputs[which].dataSync() as Float32Array;
      for (const idx of [0, 5, values.length - 1, Math.floor(values.length / 2)]) {
        const eps = 1e-2;
        const at = (delta: number) => {
          const v = values.slice();
          v[idx] += delta;
          const t = tf.tensor(v, inputs[which].shape);
          const args = inputs.map((u, j) => (j === which ? t : u));
          const out = loss(args[0], args[1], args[2]);
          const r = out.dataSync()[0];
          tf.dispose([t, out]);
          return r;
        };
        const fd = (at(eps) - at(-eps)) / (2 * eps);
        assert.ok(
          Math.abs(fd - g[idx]) <= 2e-2 * Math.max(1, Math.abs(fd)),
          `input ${which}[${idx}]: finite difference ${fd}, gradient ${g[idx]}`,
        );
      }
    }
    tf.dispose([x, f1, f2, ...grads]);
  } finally {
    setWinogradMode("auto");
  }
});

Deno.test("threads 2: Winograd splits its tiles between the threads and matches cpu", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "--allow-sys", "tests/_threaded_winograd.ts"],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `${stdout}\n${new TextDecoder().decode(out.stderr)}`);
  assert.equal(stdout.trim().split("\n").at(-1), "done", stdout);
});

Deno.test("the filter transform kernels match the float64 JavaScript transforms (G g G^T, G^T dU G)", () => {
  const backend = tf.backend();
  const run = (calls: KernelCall[][]) => assert.ok(runCallLists(backend as never, calls));
  const at = (t: tf.Tensor) => wasmOffset(backend, { dataId: t.dataId } as tf.TensorInfo);
  const maxErr = (a: Float32Array, b: Float32Array) => {
    let err = 0, scale = 0;
    for (let i = 0; i < a.length; i++) {
      err = Math.max(err, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    return err / scale;
  };
  for (const [tile, gm] of [[2, G2], [4, F4.g]] as const) {
    const nm = gm.length ** 2, prefix = tile === 4 ? "wino4_" : "wino_";
    for (const [ci, co] of [[16, 24], [8, 40]]) {
      const fv = normal([3, 3, ci, co], ci + co);
      const filter = tf.tensor1d(fv);
      // forward (four output channels a vector) and flipped (four reduction channels), 3 parts
      const layouts = [
        { red: ci, out: co, s: [0, 3 * ci * co, ci * co, co, 1], lanes: "o", outer: co / 4 },
        {
          red: co,
          out: ci,
          s: [8 * ci * co, -3 * ci * co, -ci * co, 1, co],
          lanes: "r",
          outer: ci,
        },
      ] as const;
      for (const { red, out, s, lanes, outer } of layouts) {
        const u = tf.zeros([nm * red * out]);
        const b = [0, 1, Math.floor(outer / 2), outer];
        run(
          [0, 1, 2].map((
            k,
          ) => [[`${prefix}ft_${lanes}`, at(filter), at(u), red, out, ...s, b[k], b[k + 1]]]),
        );
        const expected = new Float32Array(nm * red * out);
        winogradFilter(fv, expected, red, out, [...s], gm === G2 ? undefined : gm);
        const err = maxErr(u.dataSync() as Float32Array, expected);
        assert.ok(err < 1e-6, `F(${tile}) ${lanes} ${ci}x${co}: ${err}`);
        u.dispose();
      }
      // filter gradient: 3 partial dU summed in order, then G^T dU G, 2 parts of the quads
      const n = ci * co, parts = [0, 1, 2].map((p) => normal([nm * n], 7 + p));
      const du = tf.tensor1d(Float32Array.from(parts.flat().flatMap((p) => [...p])));
      const dg = tf.zeros([9 * n]);
      const q = n / 4;
      run([[[`${prefix}fgt`, at(du), at(dg), n, 3, nm * n * 4, 0, 5]], [[
        `${prefix}fgt`,
        at(du),
        at(dg),
        n,
        3,
        nm * n * 4,
        5,
        q,
      ]]]);
      const total = new Float32Array(nm * n).map((_, i) => parts[0][i] + parts[1][i] + parts[2][i]);
      const expected = new Float32Array(9 * n);
      winogradFilterGrad(total, expected, ci, co, gm === G2 ? undefined : gm);
      const err = maxErr(dg.dataSync() as Float32Array, expected);
      assert.ok(err < 1e-6, `F(${tile}) filter gradient ${ci}x${co}: ${err}`);
      tf.dispose([filter, du, dg]);
    }
  }
});
