/**
 * Float64 JavaScript references of the Winograd filter transforms, which the runtime computes in
 * float32 SIMD kernels (`wino_ft_*`, `wino_fgt` in `runtime/kernels/wasm_winograd.ts`): the
 * transformed filter `G g G^T` and the filter gradient `G^T dU G`. Each computes in double
 * precision and rounds once. (They were the runtime's own transforms until the kernels replaced
 * them.)
 *
 * @module
 */
import { G2 } from "../runtime/kernels/wasm_winograd.ts";

/**
 * The transformed filter `U[k] = (G g G^T)[k / a][k % a]` of a 3x3 filter (`G` `[a, 3]`, by
 * default F(2x2, 3x3)'s, `a = 4`), packed as `u[k][o / 8][i][o % 8]` (`nred` reduction channels
 * `i`, `nout` output channels `o`, a multiple of 8), where `g(r, c, i, o) = src[base + r sr + c sc
 * + i si + o so]`.
 */
export function winogradFilter(
  src: Float32Array,
  u: Float32Array,
  nred: number,
  nout: number,
  [base, sr, sc, si, so]: [number, number, number, number, number],
  gm: number[][] = G2,
): void {
  const a = gm.length;
  const gf = Float64Array.from(gm.flat());
  const g = new Float64Array(9), t = new Float64Array(3 * a);
  const kStride = nred * nout;
  for (let o = 0; o < nout; o++) {
    const ob = o >> 3, ol = o & 7;
    for (let i = 0; i < nred; i++) {
      const at = base + i * si + o * so;
      for (let r = 0; r < 3; r++) {
        for (let c = 0; c < 3; c++) g[3 * r + c] = src[at + r * sr + c * sc];
      }
      // t = G g (a x 3), then U = t G^T
      for (let r = 0; r < a; r++) {
        const g0 = gf[3 * r], g1 = gf[3 * r + 1], g2 = gf[3 * r + 2];
        t[3 * r] = g0 * g[0] + g1 * g[3] + g2 * g[6];
        t[3 * r + 1] = g0 * g[1] + g1 * g[4] + g2 * g[7];
        t[3 * r + 2] = g0 * g[2] + g1 * g[5] + g2 * g[8];
      }
      const dst = (ob * nred + i) * 8 + ol;
      for (let r = 0; r < a; r++) {
        const t0 = t[3 * r], t1 = t[3 * r + 1], t2 = t[3 * r + 2];
        for (let c = 0; c < a; c++) {
          u[(a * r + c) * kStride + dst] = gf[3 * c] * t0 + gf[3 * c + 1] * t1 + gf[3 * c + 2] * t2;
        }
      }
    }
  }
}

/**
 * The filter gradient `dg = G^T dU G` (`[3, 3, ci, co]`) of the transformed filter's gradient
 * `du` (`[a * a, ci, co]`; `G` `[a, 3]`, by default F(2x2, 3x3)'s, `a = 4`).
 */
export function winogradFilterGrad(
  du: Float32Array,
  dg: Float32Array,
  ci: number,
  co: number,
  gm?: number[][],
): void {
  const n = ci * co;
  if (gm === undefined) {
    const t = new Float64Array(12);
    for (let q = 0; q < n; q++) {
      // t = G^T dU (3x4): rows u0 + (u1 + u2) / 2, (u1 - u2) / 2, (u1 + u2) / 2 + u3 by column
      for (let c = 0; c < 4; c++) {
        const u0 = du[c * n + q], u1 = du[(4 + c) * n + q];
        const u2 = du[(8 + c) * n + q], u3 = du[(12 + c) * n + q];
        t[c] = u0 + 0.5 * (u1 + u2);
        t[4 + c] = 0.5 * (u1 - u2);
        t[8 + c] = 0.5 * (u1 + u2) + u3;
      }
      for (let r = 0; r < 3; r++) {
        const a = t[4 * r], b = t[4 * r + 1], c = t[4 * r + 2], d = t[4 * r + 3];
        dg[(3 * r) * n + q] = a + 0.5 * (b + c);
        dg[(3 * r + 1) * n + q] = 0.5 * (b - c);
        dg[(3 * r + 2) * n + q] = 0.5 * (b + c) + d;
      }
    }
    return;
  }
  const a = gm.length;
  const gf = Float64Array.from(gm.flat());
  const u = new Float64Array(a * a), t = new Float64Array(3 * a);
  for (let q = 0; q < n; q++) {
    for (let k = 0; k < a * a; k++) u[k] = du[k * n + q];
    // t = G^T dU (3 x a), then dg = t G
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < a; c++) {
        let sum = 0;
        for (let k = 0; k < a; k++) sum += gf[3 * k + r] * u[a * k + c];
        t[a * r + c] = sum;
      }
    }
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let k = 0; k < a; k++) sum += t[a * r + k] * gf[3 * k + c];
        dg[(3 * r + c) * n + q] = sum;
      }
    }
  }
}
