/**
 * The batch norm's programs with several outputs, recorded into tfjs's command encoder
 * (`webgpu_record.ts`; a tfjs program writes one buffer):
 *
 * - `apply`: the forward's second and last program. Each workgroup takes the channel tile and
 *   pixel block of `BnPartialProgram` (mode `stats`), combines the blocks' partials of its
 *   image's group by Chan's rule into the mean and the biased variance (every workgroup of a
 *   group computes the same, in the same order), writes `y = relu(gamma (x - mean) /
 *   sqrt(variance + epsilon) + beta)` for its block, and the group's first block writes the
 *   `mean` and `variance` outputs (`[G, C]`);
 * - `grad` (the backward's second of three, on devices with fewer storage buffers): per channel
 *   tile, for each group in turn, the blocks' sums `S1 = sum dz`, `S2' = sum dz (x - mean)`,
 *   written as the gradient's table `[G, 6, C]` (`S1`,
 *   `S2 = S2' rstd`, and `dx = a dz + b (x - mean) + k0`'s `a = gamma rstd`,
 *   `b = -a rstd S2 / n`, `k0 = -a S1 / n`, the mean), and `dgamma = sum_g S2`,
 *   `dbeta = sum_g S1` (`[C]`, groups added in order), one program;
 * - `dx`: the backward's second and last where the device allows 11 storage buffers a program:
 *   each block sums its group's blocks and writes its `dx`, the first block of each channel tile
 *   `dgamma` and `dbeta` (then the `grad` program's table is not needed).
 *
 * `recordBn` also records the running statistics' update (`bn_running_stats.ts`).
 *
 * Reductions are the trees of `webgpu_bn_programs.ts`; nothing atomic, so results are the same
 * run to run.
 *
 * @module
 */
import {
  BLOCK_WORKGROUP,
  type BnGeometry,
  CHAN,
  GRAD_ROWS,
  GROUP_OF,
  SUMS,
  THREADS,
  treeHeader,
} from "./webgpu_bn_programs.ts";
import type { tf } from "../../deps.ts";
import {
  cachedPipeline,
  type GpuBuffer,
  recordProgram,
  type WebgpuInternals,
} from "./webgpu_record.ts";

/** The uniform struct of the reduction programs (values: `bnUniforms`). */
const BN_STRUCT = `struct Uniforms {
  images : i32, pixels : i32, channels : i32, groups : i32, tiles : i32, blocks : i32,
  blockPixels : i32, epsilon : f32, relu : i32,
};`;

/**
 * WGSL of a whole program: `struct` (the `Uniforms`, binding 0), storage bindings 1, 2, ... (`rw`
 * ones writable), `body` with a `fn main()`, and an entry point of 256 threads calling it with
 * `workgroupId`, `numWorkgroups` and `localIndex` set.
 */
export function program(
  struct: string,
  bindings: [string, string, boolean][],
  body: string,
): string {
  const decls = bindings.map(([name, type, rw], i) =>
    `@group(0) @binding(${i + 1}) var<storage, ${rw ? "read_write" : "read"}> ${name} : ` +
    `array<${type}>;`
  ).join("\n");
  return `${struct}
@group(0) @binding(0) var<uniform> uniforms : Uniforms;
${decls}
var<private> workgroupId : vec3<u32>;
var<private> numWorkgroups : vec3<u32>;
var<private> localIndex : u32;
${body}
@compute @workgroup_size(${THREADS}, 1, 1)
fn entry(@builtin(workgroup_id) w : vec3<u32>, @builtin(num_workgroups) n : vec3<u32>,
    @builtin(local_invocation_index) l : u32) {
  workgroupId = w;
  numWorkgroups = n;
  localIndex = l;
  main();
}
`;
}

/** WGSL of the `apply`, `grad` or `dx` program (see the module comment). */
export function combineShader(g: BnGeometry, mode: "apply" | "grad" | "dx"): string {
  if (mode === "dx") return dxShader(g);
  const grad = mode === "grad";
  const inputs: [string, string, boolean][] = [["partial", "f32", false], ["spans", "i32", false]];
  const bindings: [string, string, boolean][] = grad
    ? [
      ...inputs,
      ["gamma", "f32", false],
      ["mu", "f32", false],
      ["sigma2", "f32", false],
      ["table", "f32", true],
      ["dgamma", "f32", true],
      ["dbeta", "f32", true],
    ]
    : [
      ...inputs,
      ["x", "f32", false],
      ["gamma", "f32", false],
      ["beta", "f32", false],
      ["y", "f32", true],
      ["mean", "f32", true],
      ["variance", "f32", true],
    ];
  const main = grad ? GRAD_MAIN : APPLY_MAIN;
  return program(
    BN_STRUCT,
    bindings,
    `${treeHeader(g, grad ? SUMS : CHAN)}
${reduceGroup(grad)}
${main}`,
  );
}

/** WGSL: group k's blocks of channel c into lane 0, plain sums or Chan's (every thread calls). */
function reduceGroup(sums: boolean): string {
  const accumulate = sums ? "a = a + pa; b = b + pb;" : `
    let blockStart = (r % uniforms.blocks) * uniforms.blockPixels;
    let nb = f32(min(uniforms.blockPixels, uniforms.pixels - blockStart));
    let nn = n + nb;
    let d = pa - a;
    a = a + d * (nb / nn);
    b = b + pb + d * d * n * (nb / nn);
    n = nn;`;
  return `
    fn reduceGroup(t : i32, lane : i32, c : i32, k : i32, holds : bool) {
      var n = 0.0;
      var a = 0.0;
      var b = 0.0;
      if (holds) {
        let r1 = spans[k + 1] * uniforms.blocks;
        for (var r = spans[k] * uniforms.blocks + lane; r < r1; r = r + LANES) {
          let pa = partial[r * 2 * uniforms.channels + c];
          let pb = partial[(r * 2 + 1) * uniforms.channels + c];
          ${accumulate}
        }
      }
      sN[t] = n;
      sA[t] = a;
      sB[t] = b;
      reduceLanes(t, holds);
    }`;
}

/** The `grad` program's body. */
const GRAD_MAIN = `
    fn main() {
      let t = i32(localIndex);
      let lane = t / CT;
      let c = flatWorkgroup() * CT + t % CT;
      let C = uniforms.channels;
      let holds = lane < LANES && c < C;
      var sumS1 = 0.0;
      var sumS2 = 0.0;
      for (var k = 0; k < uniforms.groups; k = k + 1) {
        reduceGroup(t, lane, c, k, holds);
        if (holds && lane == 0) {
          let s = k * C + c;
          let n = f32((spans[k + 1] - spans[k]) * uniforms.pixels);
          let rstd = inverseSqrt(sigma2[s] + uniforms.epsilon);
          let a = gamma[c] * rstd;
          let s2 = sB[t] * rstd;
          let at = k * ${GRAD_ROWS} * C + c;
          table[at] = sA[t];
          table[at + C] = s2;
          table[at + 2 * C] = a;
          table[at + 3 * C] = -a * rstd * s2 / n;
          table[at + 4 * C] = -a * sA[t] / n;
          table[at + 5 * C] = mu[s];
          sumS1 = sumS1 + sA[t];
          sumS2 = sumS2 + s2;
        }
      }
      if (holds && lane == 0) {
        dgamma[c] = sumS2;
        dbeta[c] = sumS1;
      }
    }`;

/** The `apply` program's body. */
const APPLY_MAIN = `
    ${GROUP_OF}
    fn main() {
      let C = uniforms.channels;${BLOCK_WORKGROUP}
      var k = 0;
      if (img < uniforms.images) {
        k = groupOf(img);
      }
      reduceGroup(t, lane, c, k, holds);
      // lane 0 of channel slot t % CT holds the group's (count, mean, M2)
      let slot = t % CT;
      let m = sA[slot];
      let v = sB[slot] / max(sN[slot], 1.0);
      if (holds) {
        if (lane == 0 && blk == 0 && img == spans[k]) {
          mean[k * C + c] = m;
          variance[k * C + c] = v;
        }
        let scale = gamma[c] * inverseSqrt(v + uniforms.epsilon);
        let shift = beta[c];
        let p1 = min((blk + 1) * uniforms.blockPixels, uniforms.pixels);
        for (var p = blk * uniforms.blockPixels + lane; p < p1; p = p + LANES) {
          let at = (img * uniforms.pixels + p) * C + c;
          var z = (x[at] - m) * scale + shift;
          if (uniforms.relu != 0 && !(z > 0.0)) { z = 0.0; }
          y[at] = z;
        }
      }
    }`;

/**
 * WGSL of the `dx` program: the backward's second and last where the device allows 11 storage
 * buffers a program. Each workgroup takes a block of `BnPartialProgram` (mode `grad`), sums its
 * group's blocks and writes `dx` for its block; the first block of each channel tile sums every
 * group's (in order) into `dgamma` and `dbeta`.
 */
function dxShader(g: BnGeometry): string {
  const bindings: [string, string, boolean][] = [
    ["partial", "f32", false],
    ["spans", "i32", false],
    ["gamma", "f32", false],
    ["mu", "f32", false],
    ["sigma2", "f32", false],
    ["dy", "f32", false],
    ["x", "f32", false],
    ["y", "f32", false],
    ["dx", "f32", true],
    ["dgamma", "f32", true],
    ["dbeta", "f32", true],
  ];
  return program(
    BN_STRUCT,
    bindings,
    `${treeHeader(g, SUMS)}
${reduceGroup(true)}
${GROUP_OF}
fn main() {
  let C = uniforms.channels;${BLOCK_WORKGROUP}
  var k = 0;
  if (img < uniforms.images) {
    k = groupOf(img);
  }
  let first = img == 0 && blk == 0;
  let slot = t % CT;
  var s1 = 0.0;
  var s2raw = 0.0;
  var sumS1 = 0.0;
  var sumS2 = 0.0;
  for (var kk = 0; kk < uniforms.groups; kk = kk + 1) {
    reduceGroup(t, lane, c, kk, holds && (kk == k || first));
    if (kk == k) {
      s1 = sA[slot];
      s2raw = sB[slot];
    }
    if (first && holds && lane == 0) {
      sumS1 = sumS1 + sA[t];
      sumS2 = sumS2 + sB[t] * inverseSqrt(sigma2[kk * C + c] + uniforms.epsilon);
    }
    // every read of the slots before the next group overwrites them
    workgroupBarrier();
  }
  if (holds) {
    if (first && lane == 0) {
      dgamma[c] = sumS2;
      dbeta[c] = sumS1;
    }
    let s = k * C + c;
    let n = f32((spans[k + 1] - spans[k]) * uniforms.pixels);
    let rstd = inverseSqrt(sigma2[s] + uniforms.epsilon);
    let a = gamma[c] * rstd;
    let s2 = s2raw * rstd;
    let b = -a * rstd * s2 / n;
    let k0 = -a * s1 / n;
    let m = mu[s];
    let p1 = min((blk + 1) * uniforms.blockPixels, uniforms.pixels);
    for (var p = blk * uniforms.blockPixels + lane; p < p1; p = p + LANES) {
      let at = (img * uniforms.pixels + p) * C + c;
      var dz = dy[at];
      if (uniforms.relu != 0 && !(y[at] > 0.0)) { dz = 0.0; }
      dx[at] = a * dz + b * (x[at] - m) + k0;
    }
  }
}`,
  );
}

/** The GPU buffer of a tensor (allocated, or uploaded from the CPU, where needed). */
function gpuBuffer(b: WebgpuInternals, t: tf.TensorInfo): GpuBuffer {
  b.uploadToGPU(t.dataId);
  const resource = b.tensorMap.get(t.dataId)?.resource as GpuBuffer | null | undefined;
  if (resource == null || typeof (resource as { createView?: unknown }).createView === "function") {
    throw new Error("batchNormRelu (webgpu): a tensor not in a GPU buffer (a texture?)");
  }
  return resource;
}

/**
 * Record one program: `key` names its pipeline (built from `code` the first time) and its
 * entry in the profile; `tensors` are bindings 1, 2, ...; `workgroups` in x.
 */
export function recordBn(
  b: WebgpuInternals,
  key: string,
  code: () => string,
  uniforms: { type: string; data: number[] }[],
  tensors: tf.TensorInfo[],
  workgroups: number,
): void {
  recordProgram(b, {
    pipeline: cachedPipeline(b, key, code, "entry"),
    name: key.replace(/_.*/, ""),
    uniforms,
    buffers: tensors.map((t) => gpuBuffer(b, t)),
    dataIds: tensors.map((t) => t.dataId),
    // more than 65,535 workgroups go over y too; the programs flatten them back
    dispatch: workgroups <= 65535 ? [workgroups, 1] : [65535, Math.ceil(workgroups / 65535)],
  });
}
