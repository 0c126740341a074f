/**
 * A tiled matrix product in WGSL for `@tensorflow/tfjs-backend-webgpu` programs whose operands
 * are read through snippets (implicit GEMM): `C[m, n] = Σ_k A(m, k) · B(k, n)`, where the caller
 * writes how a row and a column of A, and a row of B, are located, and how C is written (see
 * {@linkcode GemmSpec}). Used by the stride-1 convolutions of `webgpu_conv.ts`.
 *
 * Each workgroup of 128 (64) threads computes a {@linkcode TILE_M} x 32 (16, for 16 columns or
 * fewer) tile of C, 4 x 4 outputs per thread, staging {@linkcode TILE_K}-wide slices
 * of A and B in workgroup memory as vec4s (4 consecutive rows of A, columns of B). The inner axis
 * can be split over the workgroups' z index into chunks of `kChunk` (`writeC` gets the chunk
 * index), which {@linkcode ChunkSumProgram} then sums in a fixed order: deterministic, no
 * atomics.
 *
 * ```ts
 * import { GemmProgram } from "./webgpu_gemm.ts";
 * // C = A · B for row-major a [m, k] and b [k, n] (m, n, k also passed as uniforms)
 * const program = new GemmProgram({
 *   key: "demo", inputs: ["a", "b"], outputShape: [4, 8], m: 4, n: 8, k: 16, helpers: "",
 *   aRow: "rowInfo[i] = vec4<i32>(m * uniforms.dimK);", aCol: "aCol = vec4<i32>(k);",
 *   aRead: "a[rowInfo[i].x + aCol.x]", bRow: "bRow = vec4<i32>(k * uniforms.dimN);",
 *   bRead: "b[bRow.x + n]", uniforms: "",
 *   write: "fn writeC(c : i32, m : i32, n : i32, v : f32) { result[m * uniforms.dimN + n] = v; }",
 * });
 * ```
 *
 * @module
 */

/** Threads along m (y) of a workgroup; along n (x) see {@linkcode gemmTiles}. */
const WG_M = 16;
/** The tile of C a workgroup computes along m (4 rows a thread: the kernel uses vec4s). */
export const TILE_M = WG_M * 4;
/** The slice of the inner axis staged at once. */
export const TILE_K = 16;
/** WebGPU's guaranteed `maxComputeWorkgroupsPerDimension`. */
export const MAX_GROUPS = 65535;

/** How a {@linkcode GemmProgram} with `n` columns is cut (4 x 4 outputs a thread). */
export interface GemmTiles {
  /** Threads along n; the tile is `TILE_M x tileN`. */
  wgN: number;
  tileN: number;
  threads: number;
  /** Rows of A's tile each thread loads (its column is fixed: `tid % TILE_K`), `stride` apart. */
  aRows: number;
  /** Columns of B's tile each thread loads (its row is fixed: `tid % TILE_K`), `stride` apart. */
  bCols: number;
  stride: number;
}

/**
 * 16 columns a tile (64 threads) when `n <= 16`, the U-Net's 16-channel level and the head,
 * else 32 (128 threads): a 32-wide tile would be half empty there.
 */
export function gemmTiles(n: number): GemmTiles {
  const wgN = n <= 16 ? 4 : 8;
  const tileN = 4 * wgN;
  const threads = WG_M * wgN;
  return {
    wgN,
    tileN,
    threads,
    aRows: (TILE_M * TILE_K) / threads,
    bCols: (TILE_K * tileN) / threads,
    stride: threads / TILE_K,
  };
}

/**
 * What a {@linkcode GemmProgram} computes. A and B are read through WGSL snippets that split the
 * index arithmetic (integer divisions, slow on GPUs and very slow on a CPU adapter) from the
 * loads: each thread loads several rows of one column of A's tile and several columns of one
 * row of B's ({@linkcode gemmTiles}), so a row's arithmetic runs once per call and a column's
 * once per tile of k, not once per element.
 */
export interface GemmSpec {
  /** Shader cache key: one per distinct code (shapes are uniforms). */
  key: string;
  /** The input tensors' names in the shader, in the order they are passed. */
  inputs: string[];
  outputShape: number[];
  m: number;
  n: number;
  k: number;
  /** Chunks of the inner axis (workgroups along z); default 1. */
  chunks?: number;
  /** Module-scope WGSL (helper functions); may read `uniforms.*` and the inputs. */
  helpers: string;
  /** Statements run once per row slot `i` with `m` (maybe >= dimM): set `rowInfo[i]` (vec4<i32>). */
  aRow: string;
  /** Statements run once per tile with `k` (maybe >= kEnd), the thread's column of A: set `aCol`. */
  aCol: string;
  /** Expression: A at row slot `i` and the thread's column (both in range). */
  aRead: string;
  /** Statements run once per tile with `k`, the thread's row of B: set `bRow` (vec4<i32>). */
  bRow: string;
  /** Expression: B at the thread's row and column `n` (both in range). */
  bRead: string;
  /** WGSL defining `writeC(chunk, m, n, value)` (called with in-range m, n). */
  write: string;
  /** Extra uniforms (WGSL struct fields, all `i32`), appended after the GEMM's own. */
  uniforms: string;
}

/** The uniform values of a {@linkcode GemmProgram}: the GEMM's, then the spec's extras. */
export function gemmUniforms(
  spec: Pick<GemmSpec, "m" | "n" | "k" | "chunks">,
  extra: number[],
): { type: string; data: number[] }[] {
  const chunks = spec.chunks ?? 1;
  const kChunk = Math.ceil(spec.k / chunks);
  return [spec.m, spec.n, spec.k, kChunk, Math.ceil(kChunk / TILE_K), ...extra].map((v) => ({
    type: "int32",
    data: [v],
  }));
}

/** Whether a product of this size fits WebGPU's workgroup-count limits. */
export function gemmFits(m: number, n: number, chunks = 1): boolean {
  return Math.ceil(m / TILE_M) <= MAX_GROUPS && Math.ceil(n / gemmTiles(n).tileN) <= MAX_GROUPS &&
    chunks <= MAX_GROUPS;
}

/** A tiled (implicit) matrix product, optionally split over the inner axis. */
export class GemmProgram {
  readonly variableNames: string[];
  readonly uniforms: string;
  readonly workgroupSize: [number, number, number];
  readonly size = false;
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[]; y: number[]; z: number[] };
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;
  readonly #spec: GemmSpec;
  readonly #tiles: GemmTiles;

  constructor(spec: GemmSpec) {
    this.#spec = spec;
    this.#tiles = gemmTiles(spec.n);
    this.workgroupSize = [this.#tiles.wgN, WG_M, 1];
    this.variableNames = spec.inputs;
    this.outputShape = spec.outputShape;
    this.uniforms = "dimM : i32, dimN : i32, dimK : i32, kChunk : i32, kTiles : i32, " +
      spec.uniforms;
    // not a flat layout: tfjs then calls main() without an index (the tiles are ours)
    const rank = spec.outputShape.length;
    this.dispatchLayout = {
      x: [rank - 1],
      y: rank > 2 ? Array.from({ length: rank - 2 }, (_, i) => i + 1) : [],
      z: [0],
    };
    this.dispatch = [
      Math.ceil(spec.n / this.#tiles.tileN),
      Math.ceil(spec.m / TILE_M),
      spec.chunks ?? 1,
    ];
    this.shaderKey = `miSslGemm_${spec.key}_${this.#tiles.wgN}`;
  }

  getUserCode(): string {
    const s = this.#spec;
    const g = this.#tiles;
    return `
      ${s.helpers}
      ${s.write}

      // both tiles k-major, 4 consecutive m (n) per vec4: a thread's 4 x 4 outputs take one
      // vec4 of each per k
      var<workgroup> tileA : array<array<vec4<f32>, ${TILE_M / 4}>, ${TILE_K}>;
      var<workgroup> tileB : array<array<vec4<f32>, ${g.tileN / 4}>, ${TILE_K}>;

      fn main() {
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let tid = ty * ${g.wgN} + tx;
        let m0 = i32(workgroupId.y) * ${TILE_M};
        let n0 = i32(workgroupId.x) * ${g.tileN};
        let chunk = i32(workgroupId.z);
        let kBegin = chunk * uniforms.kChunk;
        let kEnd = min(kBegin + uniforms.kChunk, uniforms.dimK);
        // this thread's loads: A rows rowA0 + i * ${g.stride} of column kk, and
        // B columns colB0 + i * ${g.stride} of row kk
        let kk = tid % ${TILE_K};
        let rowA0 = tid / ${TILE_K};
        let colB0 = tid / ${TILE_K};
        var rowInfo : array<vec4<i32>, ${g.aRows}>;
        for (var i = 0; i < ${g.aRows}; i++) {
          let m = m0 + rowA0 + i * ${g.stride};
          {
            ${s.aRow}
          }
        }
        var aCol = vec4<i32>(0);
        var bRow = vec4<i32>(0);
        // acc[j][i]: output (m0 + 4 ty + i, n0 + 4 tx + j)
        var acc : array<vec4<f32>, 4>;
        // the trip count is uniform (barriers inside); the last tile is masked by kEnd
        for (var t = 0; t < uniforms.kTiles; t++) {
          let k = kBegin + t * ${TILE_K} + kk;
          let kIn = k < kEnd;
          {
            ${s.aCol}
          }
          for (var i = 0; i < ${g.aRows}; i++) {
            let r = rowA0 + i * ${g.stride};
            var v = 0.0;
            if (kIn && m0 + r < uniforms.dimM) {
              v = ${s.aRead};
            }
            tileA[kk][r / 4][r % 4] = v;
          }
          {
            ${s.bRow}
          }
          for (var i = 0; i < ${g.bCols}; i++) {
            let c = colB0 + i * ${g.stride};
            let n = n0 + c;
            var v = 0.0;
            if (kIn && n < uniforms.dimN) {
              v = ${s.bRead};
            }
            tileB[kk][c / 4][c % 4] = v;
          }
          workgroupBarrier();
          for (var q = 0; q < ${TILE_K}; q++) {
            let a = tileA[q][ty];
            let b = tileB[q][tx];
            acc[0] = fma(a, vec4<f32>(b.x), acc[0]);
            acc[1] = fma(a, vec4<f32>(b.y), acc[1]);
            acc[2] = fma(a, vec4<f32>(b.z), acc[2]);
            acc[3] = fma(a, vec4<f32>(b.w), acc[3]);
          }
          workgroupBarrier();
        }
        for (var i = 0; i < 4; i++) {
          let m = m0 + 4 * ty + i;
          for (var j = 0; j < 4; j++) {
            let n = n0 + 4 * tx + j;
            if (m < uniforms.dimM && n < uniforms.dimN) {
              writeC(chunk, m, n, acc[j][i]);
            }
          }
        }
      }
    `;
  }
}

/**
 * `out[i] = Σ_c partial[c, i]` over the chunks in order (a thread per output value): the one
 * reduction pass after a split {@linkcode GemmProgram}.
 */
export class ChunkSumProgram {
  readonly variableNames = ["partial"];
  readonly uniforms = "chunks : i32,";
  readonly workgroupSize: [number, number, number] = [128, 1, 1];
  readonly size = true;
  readonly outputShape: number[];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly shaderKey = "miSslChunkSum";

  /** `outputShape` must be flat (`[values]`); the caller reshapes. */
  constructor(values: number) {
    this.outputShape = [values];
    const groups = Math.ceil(values / 128);
    this.dispatch = groups <= MAX_GROUPS
      ? [groups, 1, 1]
      : [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS), 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var s = 0.0;
          for (var c = 0; c < uniforms.chunks; c++) {
            s = s + partial[c * uniforms.size + index];
          }
          setOutputAtIndex(index, s);
        }
      }
    `;
  }
}
