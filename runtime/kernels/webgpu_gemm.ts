/**
 * A tiled matrix product in WGSL for `@tensorflow/tfjs-backend-webgpu` programs whose operands
 * are read through functions (implicit GEMM): `C[m, n] = Σ_k A(m, k) · B(k, n)`, where the
 * caller writes `readA`, `readB` (bounds already checked) and `writeC`. Used by the stride-1
 * convolutions of `webgpu_conv.ts`.
 *
 * Each workgroup of {@linkcode GEMM_THREADS} threads computes a {@linkcode TILE_M} x
 * {@linkcode TILE_N} tile of C, {@linkcode PER_THREAD_M} x {@linkcode PER_THREAD_N} outputs per
 * thread, staging {@linkcode TILE_K}-wide slices of A and B in workgroup memory. The inner axis
 * can be split over the workgroups' z index into chunks of `kChunk` (`writeC` gets the chunk
 * index), which {@linkcode ChunkSumProgram} then sums in a fixed order: deterministic, no
 * atomics.
 *
 * ```ts
 * import { GemmProgram } from "./webgpu_gemm.ts";
 * const program = new GemmProgram({ key: "demo", inputs: ["a", "b"], outputShape: [4, 8],
 *   m: 4, n: 8, k: 16, code: "fn readA(m : i32, k : i32) -> f32 { return a[m * 16 + k]; } ..." });
 * ```
 *
 * @module
 */

/** Threads along n (x) and m (y) of a workgroup. */
const WG_N = 8;
const WG_M = 16;
/** Outputs per thread along m and n. */
export const PER_THREAD_M = 4;
export const PER_THREAD_N = 4;
/** The tile of C a workgroup computes, and the slice of the inner axis staged at once. */
export const TILE_M = WG_M * PER_THREAD_M;
export const TILE_N = WG_N * PER_THREAD_N;
export const TILE_K = 16;
/** Threads per workgroup. */
export const GEMM_THREADS = WG_M * WG_N;
/** WebGPU's guaranteed `maxComputeWorkgroupsPerDimension`. */
export const MAX_GROUPS = 65535;

/** What a {@linkcode GemmProgram} computes. */
export interface GemmSpec {
  /** Shader cache key: one per distinct `code` (shapes are uniforms). */
  key: string;
  /** The input tensors' names in the shader, in the order they are passed. */
  inputs: string[];
  outputShape: number[];
  m: number;
  n: number;
  k: number;
  /** Chunks of the inner axis (workgroups along z); default 1. */
  chunks?: number;
  /**
   * WGSL defining `readA(m, k) -> f32`, `readB(k, n) -> f32` (called with in-range indices)
   * and `writeC(chunk, m, n, value)` (called with in-range m, n), reading `uniforms.*`.
   */
  code: string;
  /** Extra uniforms (WGSL struct fields, all `i32`), appended after the GEMM's own. */
  uniforms: string;
  /** Load A's tile with consecutive threads along k (true) or along m (false). */
  aAlongK: boolean;
  /** Load B's tile with consecutive threads along k (true) or along n (false). */
  bAlongK: boolean;
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
  return Math.ceil(m / TILE_M) <= MAX_GROUPS && Math.ceil(n / TILE_N) <= MAX_GROUPS &&
    chunks <= MAX_GROUPS;
}

/** Loads `count` tile elements of `tile` (rows x cols) through `read`, threads along `fast`. */
function loadSnippet(
  tile: string,
  rows: number,
  cols: number,
  alongCols: boolean,
  read: (row: string, col: string) => string,
  inRange: (row: string, col: string) => string,
): string {
  const per = (rows * cols) / GEMM_THREADS;
  const [row, col] = alongCols ? [`e / ${cols}`, `e % ${cols}`] : [`e % ${rows}`, `e / ${rows}`];
  return `
    for (var i = 0; i < ${per}; i++) {
      let e = tid + i * ${GEMM_THREADS};
      let r = ${row};
      let c = ${col};
      var v = 0.0;
      if (${inRange("r", "c")}) {
        v = ${read("r", "c")};
      }
      ${tile}[r][c] = v;
    }`;
}

/** A tiled (implicit) matrix product, optionally split over the inner axis. */
export class GemmProgram {
  readonly variableNames: string[];
  readonly uniforms: string;
  readonly workgroupSize: [number, number, number] = [WG_N, WG_M, 1];
  readonly size = false;
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[]; y: number[]; z: number[] };
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;
  readonly #spec: GemmSpec;

  constructor(spec: GemmSpec) {
    this.#spec = spec;
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
      Math.ceil(spec.n / TILE_N),
      Math.ceil(spec.m / TILE_M),
      spec.chunks ?? 1,
    ];
    this.shaderKey = `miSslGemm_${spec.key}_${spec.aAlongK}_${spec.bAlongK}`;
  }

  getUserCode(): string {
    const s = this.#spec;
    const loadA = loadSnippet(
      "tileA",
      TILE_M,
      TILE_K,
      s.aAlongK,
      (r, c) => `readA(m0 + ${r}, k0 + ${c})`,
      (r, c) => `m0 + ${r} < uniforms.dimM && k0 + ${c} < kEnd`,
    );
    const loadB = loadSnippet(
      "tileB",
      TILE_K,
      TILE_N,
      !s.bAlongK,
      (r, c) => `readB(k0 + ${r}, n0 + ${c})`,
      (r, c) => `k0 + ${r} < kEnd && n0 + ${c} < uniforms.dimN`,
    );
    return `
      ${s.code}

      var<workgroup> tileA : array<array<f32, ${TILE_K}>, ${TILE_M}>;
      var<workgroup> tileB : array<array<f32, ${TILE_N}>, ${TILE_K}>;

      fn main() {
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let tid = ty * ${WG_N} + tx;
        let m0 = i32(workgroupId.y) * ${TILE_M};
        let n0 = i32(workgroupId.x) * ${TILE_N};
        let chunk = i32(workgroupId.z);
        let kBegin = chunk * uniforms.kChunk;
        let kEnd = min(kBegin + uniforms.kChunk, uniforms.dimK);
        var acc : array<array<f32, ${PER_THREAD_N}>, ${PER_THREAD_M}>;
        // the trip count is uniform (barriers inside); the last tile is masked by kEnd
        for (var t = 0; t < uniforms.kTiles; t++) {
          let k0 = kBegin + t * ${TILE_K};
          ${loadA}
          ${loadB}
          workgroupBarrier();
          for (var k = 0; k < ${TILE_K}; k++) {
            var b : array<f32, ${PER_THREAD_N}>;
            for (var j = 0; j < ${PER_THREAD_N}; j++) {
              b[j] = tileB[k][tx + j * ${WG_N}];
            }
            for (var i = 0; i < ${PER_THREAD_M}; i++) {
              let a = tileA[ty + i * ${WG_M}][k];
              for (var j = 0; j < ${PER_THREAD_N}; j++) {
                acc[i][j] = fma(a, b[j], acc[i][j]);
              }
            }
          }
          workgroupBarrier();
        }
        for (var i = 0; i < ${PER_THREAD_M}; i++) {
          let m = m0 + ty + i * ${WG_M};
          for (var j = 0; j < ${PER_THREAD_N}; j++) {
            let n = n0 + tx + j * ${WG_N};
            if (m < uniforms.dimM && n < uniforms.dimN) {
              writeC(chunk, m, n, acc[i][j]);
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
