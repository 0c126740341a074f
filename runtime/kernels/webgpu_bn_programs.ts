/**
 * The reduction programs of the fused training batch norm + ReLU on webgpu (`webgpu_bn.ts` runs
 * them; the element-wise ones are in `webgpu_bn_apply.ts`, the combination of the blocks, which
 * writes several outputs, in `webgpu_bn_record.ts`). Data is NHWC, bound flat; statistics are per group of consecutive images, the groups
 * given as an int32 tensor `spans` of `G + 1` image offsets.
 *
 * Reductions are trees in workgroup memory, never atomics: a workgroup of 256 threads takes a
 * tile of up to 64 channels (adjacent threads read adjacent channels) and a block of one
 * image's pixels, split between `256 / tile` lanes; each lane accumulates its pixels, then the
 * lanes are combined pairwise. The forward statistics use Welford's update per lane and Chan's
 * combination of (count, mean, M2) across lanes and blocks, so the variance never comes from a
 * difference of large sums (float32 only on the GPU).
 *
 * @module
 */
import { FLAT_THREADS, FlatProgram } from "./webgpu_flat_program.ts";

/** Threads per workgroup of the reduction programs. */
export const THREADS = FLAT_THREADS;
/** Most channels a reduction workgroup takes. */
const MAX_TILE = 64;
/** Pixels each lane accumulates per block of the first pass. */
const ITEMS = 32;

/** How a `[B, H, W, C]` tensor is split into reduction workgroups. */
export interface BnGeometry {
  images: number;
  /** Pixels per image (H x W). */
  pixels: number;
  channels: number;
  groups: number;
  /** Channels per tile and how many tiles. */
  tile: number;
  tiles: number;
  /** Lanes (threads per channel) of a workgroup. */
  lanes: number;
  /** Pixels per block and blocks per image. */
  blockPixels: number;
  blocks: number;
}

/** The split of `shape` (`[B, H, W, C]`) into workgroups for `groups` groups. */
export function bnGeometry(shape: readonly number[], groups: number): BnGeometry {
  const [images, h, w, channels] = shape;
  const tile = Math.min(channels, MAX_TILE);
  const lanes = Math.floor(THREADS / tile);
  const blockPixels = lanes * ITEMS;
  return {
    images,
    pixels: h * w,
    channels,
    groups,
    tile,
    tiles: Math.ceil(channels / tile),
    lanes,
    blockPixels,
    blocks: Math.ceil((h * w) / blockPixels),
  };
}

/** Flat workgroup index and the tree of lanes (shared by the reduction programs). */
export function treeHeader(g: BnGeometry, combine: string): string {
  return `
    const CT : i32 = ${g.tile};
    const LANES : i32 = ${g.lanes};
    var<workgroup> sN : array<f32, ${THREADS}>;
    var<workgroup> sA : array<f32, ${THREADS}>;
    var<workgroup> sB : array<f32, ${THREADS}>;

    fn flatWorkgroup() -> i32 {
      return i32((workgroupId.z * numWorkgroups.y + workgroupId.y) * numWorkgroups.x +
        workgroupId.x);
    }

    // pairs (count, a, b) of thread t and thread o into t
    fn combine(t : i32, o : i32) {
      ${combine}
    }

    // every lane's (count, a, b) of channel slot t % CT into lane 0; all threads call it
    fn reduceLanes(t : i32, holds : bool) {
      workgroupBarrier();
      var size = LANES;
      loop {
        if (size <= 1) { break; }
        let half = size / 2;
        let interval = size - half;
        if (holds && t / CT < half) {
          combine(t, t + interval * CT);
        }
        workgroupBarrier();
        size = interval;
      }
    }
  `;
}

/** Chan's combination of (count, mean, M2). */
export const CHAN = `
  let nb = sN[o];
  if (nb > 0.0) {
    let na = sN[t];
    let n = na + nb;
    let d = sA[o] - sA[t];
    let f = nb / n;
    sA[t] = sA[t] + d * f;
    sB[t] = sB[t] + sB[o] + d * d * na * f;
    sN[t] = n;
  }
`;

/** Plain sums of both values. */
export const SUMS = `
  sA[t] = sA[t] + sA[o];
  sB[t] = sB[t] + sB[o];
`;

/** WGSL: the group of image `img` (a scan of the `G + 1` offsets in `spans`). */
export const GROUP_OF = `
  fn groupOf(img : i32) -> i32 {
    var k = 0;
    loop {
      if (k + 1 >= uniforms.groups || spans[k + 1] > img) { break; }
      k = k + 1;
    }
    return k;
  }
`;

/** Fields every program of the batch norm has (tfjs-backend-webgpu's `WebGPUProgram`). */
export abstract class BnProgram extends FlatProgram {}

/** Uniforms of the programs over blocks and groups (values: {@linkcode bnUniforms}). */
export const GEOMETRY_UNIFORMS = "images : i32, pixels : i32, channels : i32, groups : i32, " +
  "tiles : i32, blocks : i32, blockPixels : i32, epsilon : f32, relu : i32,";

/** The uniform values of {@linkcode GEOMETRY_UNIFORMS}. */
export function bnUniforms(
  g: BnGeometry,
  epsilon: number,
  relu: boolean,
): { type: string; data: number[] }[] {
  const ints = [g.images, g.pixels, g.channels, g.groups, g.tiles, g.blocks, g.blockPixels];
  return [
    ...ints.map((v) => ({ type: "int32", data: [v] })),
    { type: "float32", data: [epsilon] },
    { type: "int32", data: [relu ? 1 : 0] },
  ];
}

/** WGSL: the workgroup's image, block and channel; `holds` threads hold a channel. */
export const BLOCK_WORKGROUP = `
  let t = i32(localIndex);
  let lane = t / CT;
  let wid = flatWorkgroup();
  let tile = wid % uniforms.tiles;
  let rest = wid / uniforms.tiles;
  let blk = rest % uniforms.blocks;
  let img = rest / uniforms.blocks;
  let c = tile * CT + t % CT;
  let holds = lane < LANES && c < uniforms.channels && img < uniforms.images;
`;

/** WGSL: {@linkcode BLOCK_WORKGROUP} and the block's pixel range and partials row. */
const BLOCK_COORDS = `${BLOCK_WORKGROUP}
  let p0 = blk * uniforms.blockPixels;
  let p1 = min(p0 + uniforms.blockPixels, uniforms.pixels);
  let row = img * uniforms.blocks + blk;
`;

/**
 * First pass: per (image, block, channel) of `x`, the mean and M2 of the block's pixels
 * (`stats`), or of `dz = dy [y > 0]` the sums of `dz` and `dz (x - mean)` (`grad`); output
 * `[B * blocks, 2, C]`.
 */
export class BnPartialProgram extends BnProgram {
  readonly variableNames: string[];
  override readonly uniforms = GEOMETRY_UNIFORMS;
  readonly shaderKey: string;

  constructor(readonly geometry: BnGeometry, readonly mode: "stats" | "grad") {
    const g = geometry;
    super(g.images * g.blocks * 2 * g.channels, g.images * g.blocks * g.tiles);
    this.variableNames = mode === "stats" ? ["x"] : ["dy", "x", "y", "mu", "spans"];
    this.shaderKey = `miSslBnPartial_${mode}_${g.tile}`;
  }

  getUserCode(): string {
    const stats = this.mode === "stats";
    const accumulate = stats
      ? `
        let v = x[at];
        n = n + 1.0;
        let d = v - a;
        a = a + d / n;
        b = b + d * (v - a);`
      : `
        var dz = dy[at];
        if (uniforms.relu != 0 && !(y[at] > 0.0)) { dz = 0.0; }
        a = a + dz;
        b = b + dz * (x[at] - m);`;
    return `
      ${treeHeader(this.geometry, stats ? CHAN : SUMS)}
      ${stats ? "" : GROUP_OF}
      fn main(index : i32) {
        ${BLOCK_COORDS}
        var n = 0.0;
        var a = 0.0;
        var b = 0.0;
        if (holds) {
          ${stats ? "" : "let m = mu[groupOf(img) * uniforms.channels + c];"}
          for (var p = p0 + lane; p < p1; p = p + LANES) {
            let at = (img * uniforms.pixels + p) * uniforms.channels + c;
            ${accumulate}
          }
        }
        sN[t] = n;
        sA[t] = a;
        sB[t] = b;
        reduceLanes(t, holds);
        if (holds && lane == 0) {
          result[row * 2 * uniforms.channels + c] = sA[t];
          result[(row * 2 + 1) * uniforms.channels + c] = sB[t];
        }
      }
    `;
  }
}

/** Rows of the gradient's per-(group, channel) table (`webgpu_bn_record.ts`'s combine, mode `grad`). */
export const GRAD_ROWS = 6;
