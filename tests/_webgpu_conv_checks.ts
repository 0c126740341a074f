/**
 * The numbers `webgpu_conv_test.ts` checks, computed in a child process on the WebGPU adapter:
 * the tiled convolution kernels of `runtime/kernels/webgpu_conv.ts` (forward, input gradient,
 * filter gradient) against the `cpu` backend on odd shapes, the GPU programs each ran, and
 * whether the filter gradient is the same on two runs. Prints one JSON object.
 *
 * It runs apart for the reason `_webgpu_checks.ts` does (tfjs-backend-webgpu stays out of the
 * project's deno.lock).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { probeAdapter } from "../runtime/webgpu.ts";
import { filterGradChunks, tfjsForwardIsTiled } from "../runtime/kernels/webgpu_conv.ts";
import { relativeError } from "./_webgpu_checks.ts";

/** One convolution: input `[n, h, w, ci]`, filter `[k, k, ci, co]`. */
export interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride?: number;
  pad?: "same" | "valid";
}

export const CONV_CASES: ConvCase[] = [
  { name: "3x3 same, N=3 H=7 W=5 Ci=3 Co=5", x: [3, 7, 5, 3], filter: [3, 3, 3, 5] },
  { name: "1x1 same, N=3 H=7 W=5 Ci=3 Co=5", x: [3, 7, 5, 3], filter: [1, 1, 3, 5] },
  {
    name: "1x1 valid, the head (Ci=16, Co=4)",
    x: [3, 7, 5, 16],
    filter: [1, 1, 16, 4],
    pad: "valid",
  },
  { name: "3x3 valid, N=2 H=8 W=6", x: [2, 8, 6, 4], filter: [3, 3, 4, 6], pad: "valid" },
  // 1,311 pixels: several chunks, the last one partial
  { name: "3x3 same, Ci=1 Co=16, 1,311 pixels", x: [3, 23, 19, 1], filter: [3, 3, 1, 16] },
  { name: "3x3 same, Ci=16 Co=1", x: [3, 7, 5, 16], filter: [3, 3, 16, 1] },
  // more than one tile along every axis, none of them full
  { name: "3x3 same, Ci=67 Co=70", x: [2, 9, 11, 67], filter: [3, 3, 67, 70] },
  { name: "3x3 same, N=4 32x32 Ci=8 Co=16", x: [4, 32, 32, 8], filter: [3, 3, 8, 16] },
  { name: "3x3 same, N=2 8x8 Ci=128 Co=64", x: [2, 8, 8, 128], filter: [3, 3, 128, 64] },
  // tfjs's own kernels (the fallback)
  {
    name: "3x3 valid, stride 2 (fallback)",
    x: [2, 7, 7, 3],
    filter: [3, 3, 3, 4],
    stride: 2,
    pad: "valid",
  },
];

/** What `webgpu_conv_test.ts` asserts, per case. */
export interface ConvCheck {
  name: string;
  /** Relative errors of the output, the input gradient and the filter gradient. */
  errors: [number, number, number];
  /** The filter gradient's chunks (`filterGradChunks`; 1 for the fallback). */
  chunks: number;
  /** Whether our forward runs (else tfjs's tiled one: `tfjsForwardIsTiled`). */
  oursForward: boolean;
  /** GPU programs each kernel ran on webgpu, by kernel name. */
  programs: Record<string, string[]>;
  /** Two runs of the filter gradient on webgpu gave the same bits. */
  deterministic: boolean;
}

export interface ConvChecks {
  cases: ConvCheck[];
  /** The programs of the first case with `kernels: builtin`. */
  builtinPrograms: Record<string, string[]>;
  seconds: number;
}

function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = 2 * (s / 2 ** 32) - 1;
  }
  return a;
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Output, input gradient and filter gradient of `c` on the current backend. */
async function evaluate(c: ConvCase, seed: number): Promise<Float32Array[]> {
  const x = tf.tensor4d(values(size(c.x), seed), c.x);
  const w = tf.tensor4d(values(size(c.filter), seed + 1), c.filter);
  const f = (a: tf.Tensor, b: tf.Tensor) =>
    tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride ?? 1, c.pad ?? "same");
  const y = f(x, w);
  const dy = tf.tensor(values(y.size, seed + 2), y.shape);
  const [dx, dw] = tf.grads(f)([x, w], dy);
  const out = [];
  for (const t of [y, dx, dw]) out.push(Float32Array.from(await t.data()));
  tf.dispose([x, w, y, dy, dx, dw]);
  return out;
}

/** The GPU programs each kernel of `c`'s forward and gradients ran (tfjs's profile names them). */
async function programs(c: ConvCase): Promise<Record<string, string[]>> {
  const info = await tf.profile(async () => {
    await evaluate(c, 1);
  });
  const out: Record<string, string[]> = {};
  for (const k of info.kernels) {
    if (!k.name.startsWith("Conv2D")) continue;
    const extra = typeof k.extraInfo === "string" ? k.extraInfo.trim() : "";
    out[k.name] = extra === "" ? [] : extra.split(", ").map((p) => p.split(":")[0].trim());
  }
  return out;
}

if (import.meta.main) {
  const t0 = performance.now();
  if (await probeAdapter() === null) throw new Error("no WebGPU adapter");
  const cases: ConvCheck[] = [];
  for (const [i, c] of CONV_CASES.entries()) {
    await initBackend("cpu");
    const ref = await evaluate(c, 10 * i + 1);
    await initBackend("webgpu");
    const got = await evaluate(c, 10 * i + 1);
    const again = await evaluate(c, 10 * i + 1);
    const [n, h, w] = c.x;
    const [k, , ci, co] = c.filter;
    const outPixels = c.pad === "valid" ? n * (h - k + 1) * (w - k + 1) : n * h * w;
    cases.push({
      name: c.name,
      errors: ref.map((r, j) => relativeError(got[j], r)) as [number, number, number],
      chunks: c.stride ? 1 : filterGradChunks(outPixels, k * k * ci * co),
      oursForward: !tfjsForwardIsTiled(c.filter),
      programs: await programs(c),
      deterministic: got[2].every((v, j) => Object.is(v, again[2][j])),
    });
  }
  // last: `builtin` puts back tfjs's kernels for the rest of the process
  await initBackend("webgpu", { kernels: "builtin" });
  const builtinPrograms = await programs(CONV_CASES[0]);
  const result: ConvChecks = {
    cases,
    builtinPrograms,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  console.log(JSON.stringify(result));
}
