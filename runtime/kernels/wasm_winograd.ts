/**
 * Winograd F(2x2, 3x3) for the stride-1 3x3 NHWC convolutions of the wasm backend (forward and,
 * as a convolution of `dy` with the flipped filter, input gradient), as three kernels of the
 * module of {@linkcode "./wasm_gemm.ts"} run on chunks of output tiles:
 *
 * - `wino_in`: each 4x4 input patch `d` (zero outside the image) to `V = B^T d B`, 16 matrices
 *   `[tile, ci]`;
 * - `wino_gemm`: the 16 products `M[k] = V[k] U[k]` (`U[k]` `[ci, co]`, the transformed filter
 *   `G g G^T`, packed by 8 output channels), tiles of `WINO_MR` rows by 8 channels;
 * - `wino_out`: `Y = A^T M A`, the 2x2 outputs of each tile (clipped at the border), plus a bias
 *   and a ReLU when asked.
 *
 * The products take 16 multiply-adds per tile and channel pair where the direct convolution takes
 * 36 (2.25x fewer); the transforms cost O(channels) per tile. The filter gradient: `wino_in`,
 * `wino_dyt` (`A dy A^T`) and `wino_wgemm` (`dU[k] += V[k]^T dY[k]`), then `G^T dU G`.
 * F(4x4, 3x3) (6x6 patches, 36 products per 4x4 outputs instead of 144): `wino4_in`,
 * `wino4_gemm` (`wino_gemm` on 36 matrices), `wino4_out`; for the filter gradient `wino4_in`,
 * `wino4_dyt`, `wino4_wgemm`.
 *
 * @module
 */
import { Fn, type ModuleFunction, Tile8 } from "./wasm_asm.ts";

/** Rows (tiles) of a register tile of `wino_gemm`. */
export const WINO_MR = 6;

/**
 * Sets `b`, `ty`, `tx`, the coordinates of tile `t` of `[n, th, tw]` (row-major): `tx = t % tw`,
 * `ty = t / tw % th`, `b = t / (tw th)` (`q` a scratch local).
 */
function emitTile(f: Fn, t: number, [TH, TW]: number[], [b, ty, tx, q]: number[]): void {
  f.get(t).get(TW).i32RemU().set(tx);
  f.get(t).get(TW).i32DivU().tee(q).get(TH).i32RemU().set(ty);
  f.get(q).get(TH).i32DivU().set(b);
}

/**
 * Pushes `row + j + k * ks`: byte `j` of the tile's row of matrix `k`, where `row` is the row's
 * address in matrix 0 and the matrices lie `ks` bytes apart.
 */
function emitMatrixAt(f: Fn, row: number, j: number, ks: number, k: number): void {
  f.get(row).get(j).i32Add();
  if (k > 0) f.get(ks).i32(k).i32Mul().i32Add();
}

/**
 * The input patch of tile `t` of `wino_in` / `wino4_in` (`[n, th, tw]` row-major, tiles of
 * `2^shift` outputs): sets `b`, `ty`, `tx`, the patch's top-left input pixel `(y0, x0)`, and
 * `p[r * n + c]` = the address of input pixel `(y0 + r, x0 + c)` of image `b`
 * (`x + ((b h + y0 + r) w + x0 + c) ci4`), or `zero` where that pixel is in the padding.
 */
function emitPatch(
  f: Fn,
  [X, H, W, TH, TW, TOP, LEFT, ZERO]: number[],
  [t, b, ty, tx, y0, x0, ci4, row, q]: number[],
  p: number[],
  n: number,
  shift: number,
): void {
  emitTile(f, t, [TH, TW], [b, ty, tx, q]);
  f.get(ty).i32(shift).i32Shl().get(TOP).i32Sub().set(y0);
  f.get(tx).i32(shift).i32Shl().get(LEFT).i32Sub().set(x0);
  for (let r = 0; r < n; r++) {
    // row = (b * h + y0 + r) * w, or -1 when the row is in the padding
    f.i32(-1).set(row);
    f.get(y0).i32(r).i32Add().tee(q).i32(0).i32GeS().if();
    f.get(q).get(H).i32LtS().if();
    f.get(b).get(H).i32Mul().get(q).i32Add().get(W).i32Mul().set(row);
    f.end().end();
    for (let c = 0; c < n; c++) {
      f.get(ZERO).set(p[n * r + c]);
      f.get(row).i32(0).i32GeS().if();
      f.get(x0).i32(c).i32Add().tee(q).i32(0).i32GeS().if();
      f.get(q).get(W).i32LtS().if();
      f.get(X).get(row).get(q).i32Add().get(ci4).i32Mul().i32Add().set(p[n * r + c]);
      f.end().end().end();
    }
  }
}

/**
 * The output-gradient pixels of tile `(b, ty, tx)` of `wino_dyt` / `wino4_dyt` (tiles of
 * `n = 2^shift` outputs): `p[n y + x]` = the address of pixel `(n ty + y, n tx + x)` of image `b`
 * of `dy` (`dy + ((b ho + n ty + y) wo + n tx + x) co4`), or `zero` where it is outside
 * `[ho, wo]`.
 */
function emitOutputPixels(
  f: Fn,
  [DY, HO, WO, ZERO]: number[],
  [b, ty, tx, co4]: number[],
  p: number[],
  shift: number,
): void {
  const n = 1 << shift;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      f.get(ZERO).set(p[n * y + x]);
      f.get(ty).i32(shift).i32Shl().i32(y).i32Add().get(HO).i32LtS().if();
      f.get(tx).i32(shift).i32Shl().i32(x).i32Add().get(WO).i32LtS().if();
      f.get(DY).get(b).get(HO).i32Mul().get(ty).i32(shift).i32Shl().i32Add().i32(y).i32Add().get(WO)
        .i32Mul().get(tx).i32(shift).i32Shl().i32Add().i32(x).i32Add().get(co4).i32Mul().i32Add()
        .set(p[n * y + x]);
      f.end().end();
    }
  }
}

/**
 * `wino_in(x, v, t0, t1, h, w, ci, th, tw, top, left, ks, zero)`: for tiles `t` in `[t0, t1)`
 * (`[n, th, tw]` row-major; tile `(b, ty, tx)` reads the input patch of rows `2 ty - top ..
 * + 3` and columns `2 tx - left .. + 3` of image `b` of `x` `[n, h, w, ci]`), writes
 * `v[k][t - t0][i]` (matrix `k` at byte `v + k * ks`) `= (B^T d B)[k / 4][k % 4]`. `ci` a
 * multiple of 4, at most the floats of `zero` (a zero buffer read for the padding).
 */
function winoInput(): Fn {
  const [f, [X, V, T0, T1, H, W, CI, TH, TW, TOP, LEFT, KS, ZERO]] = Fn.kernel(13);
  const t = f.local("i32"), b = f.local("i32"), ty = f.local("i32"), tx = f.local("i32");
  const y0 = f.local("i32"), x0 = f.local("i32"), ci4 = f.local("i32"), i = f.local("i32");
  const row = f.local("i32"), dst = f.local("i32"), q = f.local("i32");
  const p = Array.from({ length: 16 }, () => f.local("i32"));
  const u = Array.from({ length: 4 }, () => f.local("v128"));
  // row a of B^T d: u[a][c] = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)[a] over rows, column c;
  // then V[a][*] = the same combination of u[a][0..3] over columns.
  const rowsOf: [number, number, "sub" | "add"][] = [[0, 2, "sub"], [1, 2, "add"], [
    2,
    1,
    "sub",
  ], [1, 3, "sub"]];
  f.get(CI).i32(2).i32Shl().set(ci4);
  f.get(T0).set(t);
  f.for(t, T1, 1, () => {
    emitPatch(f, [X, H, W, TH, TW, TOP, LEFT, ZERO], [t, b, ty, tx, y0, x0, ci4, row, q], p, 4, 1);
    // dst = v + (t - t0) * ci4
    f.get(V).get(t).get(T0).i32Sub().get(ci4).i32Mul().i32Add().set(dst);
    f.i32(0).set(i);
    f.for(i, ci4, 16, () => {
      for (let a = 0; a < 4; a++) {
        const [r0, r1, op] = rowsOf[a];
        for (let c = 0; c < 4; c++) {
          f.get(p[4 * r0 + c]).get(i).i32Add().v128Load();
          f.get(p[4 * r1 + c]).get(i).i32Add().v128Load();
          if (op === "sub") f.f32x4Sub();
          else f.f32x4Add();
          f.set(u[c]);
        }
        for (let c = 0; c < 4; c++) {
          const [c0, c1, cop] = rowsOf[c];
          emitMatrixAt(f, dst, i, KS, 4 * a + c);
          f.get(u[c0]).get(u[c1]);
          if (cop === "sub") f.f32x4Sub();
          else f.f32x4Add();
          f.v128Store();
        }
      }
    });
  });
  return f;
}

/**
 * `wino_gemm(v, u, m, rows, ci, co, ksa, ksm)`: `m[k][r][o] = sum_i v[k][r][i] u[k][o / 8][i][o %
 * 8]` for the 16 matrices `k` (`v[k]` at byte `v + k * ksa`, `[rows, ci]`; `m[k]` at `m + k *
 * ksm`, `[rows, co]`; `u[k]` at `u + k * ci * co * 4`), `ci` a multiple of 4, `co` of 8.
 */
function winoGemm(fma: boolean, mr: number, matrices = 16): Fn {
  const [f, [V, U, M, ROWS, CI, CO, KSA, KSM]] = Fn.kernel(8);
  const k = f.local("i32"), nb = f.local("i32"), m = f.local("i32"), i = f.local("i32");
  const ci4 = f.local("i32"), co4 = f.local("i32"), va = f.local("i32"), ub = f.local("i32");
  const kb = f.local("i32"), mo = f.local("i32"), last = f.local("i32"), o = f.local("i32");
  const p = Array.from({ length: mr }, () => f.local("i32"));
  const tile = new Tile8(f, mr, fma);
  f.get(CI).i32(2).i32Shl().set(ci4);
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(ROWS).i32(-1).i32Add().set(last);
  f.i32(0).set(k);
  f.forUntil(k, () => f.get(k).i32(matrices).i32GeS(), 1, () => { // matrices
    f.get(V).get(k).get(KSA).i32Mul().i32Add().set(va);
    f.get(M).get(k).get(KSM).i32Mul().i32Add().set(mo);
    f.get(U).get(k).get(ci4).i32Mul().get(CO).i32Mul().i32Add().set(ub);
    tile.forBlocks(nb, CO, () => {
      f.i32(0).set(m);
      f.for(m, ROWS, mr, () => { // rows by mr
        tile.zero();
        for (let r = 0; r < mr; r++) {
          // p_r = va + min(m + r, rows - 1) * ci4 (rows past the end repeat the last, not stored)
          f.get(va);
          f.get(m).i32(r).i32Add().get(last).get(m).i32(r).i32Add().get(last).i32LtS().select();
          f.get(ci4).i32Mul().i32Add().set(p[r]);
        }
        f.get(ub).get(nb).get(ci4).i32Mul().i32(3).i32Shl().i32Add().set(kb);
        f.get(CI).set(i);
        f.loop();
        for (let s = 0; s < 4; s++) {
          tile.update(kb, 32 * s, (r) => f.get(p[r]).v128Load32Splat(4 * s));
        }
        for (let r = 0; r < mr; r++) f.get(p[r]).i32(16).i32Add().set(p[r]);
        f.get(kb).i32(128).i32Add().set(kb);
        f.get(i).i32(-4).i32Add().tee(i).brIf(0);
        f.end();
        for (let r = 0; r < mr; r++) {
          f.get(m).i32(r).i32Add().get(ROWS).i32LtS().if();
          f.get(mo).get(m).i32(r).i32Add().get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl()
            .i32Add().set(o);
          tile.storeRow(r, () => f.get(o));
          f.end();
        }
      });
    });
  });
  return f;
}

/**
 * `wino_out(m, y, t0, t1, ho, wo, co, th, tw, ksm, bias, relu)`: for tiles `t` in `[t0, t1)`,
 * `y[b, 2 ty + dy, 2 tx + dx, o] = (A^T M A)[dy][dx] (+ bias[o]) (max 0 when relu)` where
 * `M[k] = m[k][t - t0][o]` (matrix `k` at byte `m + k * ksm`), for the outputs inside
 * `[ho, wo]`; `bias` a float32 `[co]` (a zero buffer for none), `co` a multiple of 4.
 */
function winoOutput(): Fn {
  const [f, [M, Y, T0, T1, HO, WO, CO, TH, TW, KSM, BIAS, RELU]] = Fn.kernel(12);
  const t = f.local("i32"), b = f.local("i32"), ty = f.local("i32"), tx = f.local("i32");
  const q = f.local("i32"), co4 = f.local("i32"), j = f.local("i32"), src = f.local("i32");
  const out = f.local("i32"), okY = f.local("i32"), okX = f.local("i32"), rowStep = f.local("i32");
  const s = Array.from({ length: 4 }, () => f.local("v128"));
  const floor = f.local("v128"), bias = f.local("v128"), r0 = f.local("v128");
  const r1 = f.local("v128");
  const load = (k: number) => {
    emitMatrixAt(f, src, j, KSM, k);
    f.v128Load();
  };
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(WO).get(co4).i32Mul().set(rowStep);
  // floor = relu ? 0 : -inf
  f.v128Const0().f32(-Infinity).f32x4Splat().get(RELU).select().set(floor);
  f.get(T0).set(t);
  f.for(t, T1, 1, () => {
    emitTile(f, t, [TH, TW], [b, ty, tx, q]);
    // out = y + ((b * ho + 2 ty) * wo + 2 tx) * co4
    f.get(Y).get(b).get(HO).i32Mul().get(ty).i32(1).i32Shl().i32Add().get(WO).i32Mul().get(tx)
      .i32(1).i32Shl().i32Add().get(co4).i32Mul().i32Add().set(out);
    f.get(ty).i32(1).i32Shl().i32(1).i32Add().get(HO).i32LtS().set(okY);
    f.get(tx).i32(1).i32Shl().i32(1).i32Add().get(WO).i32LtS().set(okX);
    f.get(M).get(t).get(T0).i32Sub().get(co4).i32Mul().i32Add().set(src);
    f.i32(0).set(j);
    f.for(j, co4, 16, () => {
      f.get(BIAS).get(j).i32Add().v128Load().set(bias);
      for (let dx = 0; dx < 2; dx++) {
        // s[r] = (A^T over columns)[dx] of row r: m0 + m1 + m2 or m1 - m2 - m3
        for (let r = 0; r < 4; r++) {
          if (dx === 0) {
            load(4 * r);
            load(4 * r + 1);
            f.f32x4Add();
            load(4 * r + 2);
            f.f32x4Add();
          } else {
            load(4 * r + 1);
            load(4 * r + 2);
            f.f32x4Sub();
            load(4 * r + 3);
            f.f32x4Sub();
          }
          f.set(s[r]);
        }
        f.get(s[0]).get(s[1]).f32x4Add().get(s[2]).f32x4Add().get(bias).f32x4Add().get(floor)
          .f32x4Max().set(r0);
        f.get(s[1]).get(s[2]).f32x4Sub().get(s[3]).f32x4Sub().get(bias).f32x4Add().get(floor)
          .f32x4Max().set(r1);
        if (dx === 1) f.get(okX).if();
        f.get(out).get(j).i32Add();
        if (dx === 1) f.get(co4).i32Add();
        f.get(r0).v128Store();
        f.get(okY).if();
        f.get(out).get(j).i32Add().get(rowStep).i32Add();
        if (dx === 1) f.get(co4).i32Add();
        f.get(r1).v128Store();
        f.end();
        if (dx === 1) f.end();
      }
    });
  });
  return f;
}

/**
 * `wino_dyt(dy, d, t0, t1, ho, wo, co, th, tw, ksd, zero)`: for tiles `t` in `[t0, t1)`, the
 * output gradient of the tile's 2x2 outputs (zero outside `[ho, wo]`) to `A dy A^T`, 16 matrices
 * `d[k][t - t0][o]` (matrix `k` at byte `d + k * ksd`), `co` a multiple of 4: the gradient of the
 * products `U[k] V[k]` of the forward.
 */
function winoOutputGrad(): Fn {
  const [f, [DY, D, T0, T1, HO, WO, CO, TH, TW, KSD, ZERO]] = Fn.kernel(11);
  const t = f.local("i32"), b = f.local("i32"), ty = f.local("i32"), tx = f.local("i32");
  const q = f.local("i32"), co4 = f.local("i32"), j = f.local("i32"), dst = f.local("i32");
  const p = Array.from({ length: 4 }, () => f.local("i32"));
  const d = Array.from({ length: 4 }, () => f.local("v128"));
  const e0 = f.local("v128"), e1 = f.local("v128"), zero = f.local("v128");
  f.get(CO).i32(2).i32Shl().set(co4);
  f.v128Const0().set(zero);
  f.get(T0).set(t);
  f.for(t, T1, 1, () => {
    emitTile(f, t, [TH, TW], [b, ty, tx, q]);
    emitOutputPixels(f, [DY, HO, WO, ZERO], [b, ty, tx, co4], p, 1);
    f.get(D).get(t).get(T0).i32Sub().get(co4).i32Mul().i32Add().set(dst);
    f.i32(0).set(j);
    f.for(j, co4, 16, () => {
      for (let k = 0; k < 4; k++) f.get(p[k]).get(j).i32Add().v128Load().set(d[k]);
      // rows of A dy: d0, d0 + d1, d0 - d1, -d1 (d0, d1 the two rows of the tile)
      for (let r = 0; r < 4; r++) {
        for (let c = 0; c < 2; c++) {
          const [top, bottom] = [d[c], d[2 + c]];
          if (r === 0) f.get(top);
          else if (r === 1) f.get(top).get(bottom).f32x4Add();
          else if (r === 2) f.get(top).get(bottom).f32x4Sub();
          else f.get(zero).get(bottom).f32x4Sub();
          f.set(c === 0 ? e0 : e1);
        }
        // columns of (A dy) A^T: e0, e0 + e1, e0 - e1, -e1
        for (let c = 0; c < 4; c++) {
          emitMatrixAt(f, dst, j, KSD, 4 * r + c);
          if (c === 0) f.get(e0);
          else if (c === 1) f.get(e0).get(e1).f32x4Add();
          else if (c === 2) f.get(e0).get(e1).f32x4Sub();
          else f.get(zero).get(e1).f32x4Sub();
          f.v128Store();
        }
      }
    });
  });
  return f;
}

/**
 * `wino_wgemm(v, d, du, rows, ci, co, ksa, ksd)`: `du[k][i][o] += sum_r v[k][r][i] d[k][r][o]`
 * over the `rows` tiles, for the 16 matrices `k` (`v[k]` at byte `v + k * ksa`, `[rows, ci]`;
 * `d[k]` at `d + k * ksd`, `[rows, co]`; `du[k]` at `du + k * ci * co * 4`), `ci` a multiple of
 * 4, `co` of 8: tiles of 4 input by 8 output channels, two tiles a step. `wino_wgemm0` /
 * `wino4_wgemm0` store `du` instead of adding to it.
 */
function winoFilterGemm(fma: boolean, matrices = 16, zeroInit = false): Fn {
  const [f, [V, D, DU, ROWS, CI, CO, KSA, KSD]] = Fn.kernel(8);
  const k = f.local("i32"), i0 = f.local("i32"), nb = f.local("i32"), r = f.local("i32");
  const ci4 = f.local("i32"), co4 = f.local("i32"), va = f.local("i32"), da = f.local("i32");
  const dk = f.local("i32"), dwp = f.local("i32"), pa = f.local("i32"), pd = f.local("i32");
  const tile = new Tile8(f, 4, fma);
  f.get(CI).i32(2).i32Shl().set(ci4);
  f.get(CO).i32(2).i32Shl().set(co4);
  const body = () => {
    tile.update(pd, 0, (l) => f.get(pa).v128Load32Splat(4 * l));
    f.get(pa).get(ci4).i32Add().set(pa);
    f.get(pd).get(co4).i32Add().set(pd);
  };
  f.i32(0).set(k);
  f.forUntil(k, () => f.get(k).i32(matrices).i32GeS(), 1, () => { // matrices
    f.get(V).get(k).get(KSA).i32Mul().i32Add().set(va);
    f.get(D).get(k).get(KSD).i32Mul().i32Add().set(da);
    f.get(DU).get(k).get(ci4).i32Mul().get(CO).i32Mul().i32Add().set(dk);
    f.i32(0).set(i0);
    f.for(i0, CI, 4, () => { // input channels by 4
      tile.forBlocks(nb, CO, () => {
        f.get(dk).get(i0).get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(dwp);
        if (zeroInit) tile.zero();
        else tile.loadRows(dwp, co4);
        f.get(va).get(i0).i32(2).i32Shl().i32Add().set(pa);
        f.get(da).get(nb).i32(5).i32Shl().i32Add().set(pd);
        f.get(ROWS).set(r);
        // pairs of tiles, then the last of an odd count
        f.forUntil(r, () => f.get(r).i32(2).i32LtS(), -2, () => {
          body();
          body();
        });
        f.get(r).if();
        body();
        f.end();
        tile.storeRows(dwp, co4);
      });
    });
  });
  return f;
}

/** F(4x4, 3x3) (Lavin and Gray): `B^T` (6x6), `G` (6x3), `A^T` (4x6). */
export const F4 = {
  bt: [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  g: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  at: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
};

/** Locals holding `splat(|c|)` for the coefficients other than 0 and +-1 of `rows`. */
function constants(f: Fn, rows: number[][]): Map<number, number> {
  const map = new Map<number, number>();
  for (const row of rows) {
    for (const c of row) {
      const a = Math.abs(c);
      if (a === 0 || a === 1 || map.has(a)) continue;
      const l = f.local("v128");
      f.f32(a).f32x4Splat().set(l);
      map.set(a, l);
    }
  }
  return map;
}

/**
 * Pushes `sum_j coef[j] * term(j)` (a v128) where `term(j)` pushes the j-th vector; `zero` a
 * local holding zeros, `k` the constants of {@linkcode constants}.
 */
function combine(
  f: Fn,
  coef: number[],
  term: (j: number) => void,
  k: Map<number, number>,
  zero: number,
): void {
  let first = true;
  coef.forEach((c, j) => {
    if (c === 0) return;
    const a = Math.abs(c);
    if (first && c < 0) f.get(zero);
    term(j);
    if (a !== 1) f.get(k.get(a)!).f32x4Mul();
    if (!first || c < 0) {
      if (c < 0) f.f32x4Sub();
      else f.f32x4Add();
    }
    first = false;
  });
  if (first) f.get(zero);
}

/**
 * `wino4_in(x, v, t0, t1, h, w, ci, th, tw, top, left, ks, zero)`: {@linkcode winoInput} for
 * F(4x4, 3x3): tiles of 4x4 outputs read 6x6 input patches (rows `4 ty - top ..`), 36 matrices.
 */
function winoInput4(): Fn {
  const [f, [X, V, T0, T1, H, W, CI, TH, TW, TOP, LEFT, KS, ZERO]] = Fn.kernel(13);
  const t = f.local("i32"), b = f.local("i32"), ty = f.local("i32"), tx = f.local("i32");
  const y0 = f.local("i32"), x0 = f.local("i32"), ci4 = f.local("i32"), i = f.local("i32");
  const row = f.local("i32"), dst = f.local("i32"), q = f.local("i32");
  const p = Array.from({ length: 36 }, () => f.local("i32"));
  const u = Array.from({ length: 6 }, () => f.local("v128"));
  const zero = f.local("v128");
  const k = constants(f, F4.bt);
  f.v128Const0().set(zero);
  f.get(CI).i32(2).i32Shl().set(ci4);
  f.get(T0).set(t);
  f.for(t, T1, 1, () => {
    emitPatch(f, [X, H, W, TH, TW, TOP, LEFT, ZERO], [t, b, ty, tx, y0, x0, ci4, row, q], p, 6, 2);
    f.get(V).get(t).get(T0).i32Sub().get(ci4).i32Mul().i32Add().set(dst);
    f.i32(0).set(i);
    f.for(i, ci4, 16, () => {
      for (let a = 0; a < 6; a++) {
        // u[c] = (B^T d)[a][c], then V[a][*] = u B
        for (let c = 0; c < 6; c++) {
          combine(f, F4.bt[a], (j) => f.get(p[6 * j + c]).get(i).i32Add().v128Load(), k, zero);
          f.set(u[c]);
        }
        for (let c = 0; c < 6; c++) {
          emitMatrixAt(f, dst, i, KS, 6 * a + c);
          combine(f, F4.bt[c], (j) => f.get(u[j]), k, zero);
          f.v128Store();
        }
      }
    });
  });
  return f;
}

/**
 * `wino4_out(m, y, t0, t1, ho, wo, co, th, tw, ksm, bias, relu)`: {@linkcode winoOutput} for
 * F(4x4, 3x3): the 4x4 outputs of each tile from its 36 matrices.
 */
function winoOutput4(): Fn {
  const [f, [M, Y, T0, T1, HO, WO, CO, TH, TW, KSM, BIAS, RELU]] = Fn.kernel(12);
  const t = f.local("i32"), b = f.local("i32"), ty = f.local("i32"), tx = f.local("i32");
  const q = f.local("i32"), co4 = f.local("i32"), j = f.local("i32"), src = f.local("i32");
  const out = f.local("i32"), ny = f.local("i32"), nx = f.local("i32"), rowStep = f.local("i32");
  const s = Array.from({ length: 6 }, () => f.local("v128"));
  const floor = f.local("v128"), bias = f.local("v128"), zero = f.local("v128");
  const k = constants(f, F4.at);
  f.v128Const0().set(zero);
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(WO).get(co4).i32Mul().set(rowStep);
  f.v128Const0().f32(-Infinity).f32x4Splat().get(RELU).select().set(floor);
  f.get(T0).set(t);
  f.for(t, T1, 1, () => {
    emitTile(f, t, [TH, TW], [b, ty, tx, q]);
    f.get(Y).get(b).get(HO).i32Mul().get(ty).i32(2).i32Shl().i32Add().get(WO).i32Mul().get(tx)
      .i32(2).i32Shl().i32Add().get(co4).i32Mul().i32Add().set(out);
    // valid rows and columns of the tile: ho - 4 ty, wo - 4 tx (at least 1)
    f.get(HO).get(ty).i32(2).i32Shl().i32Sub().set(ny);
    f.get(WO).get(tx).i32(2).i32Shl().i32Sub().set(nx);
    f.get(M).get(t).get(T0).i32Sub().get(co4).i32Mul().i32Add().set(src);
    f.i32(0).set(j);
    f.for(j, co4, 16, () => {
      f.get(BIAS).get(j).i32Add().v128Load().set(bias);
      for (let x = 0; x < 4; x++) {
        if (x > 0) f.get(nx).i32(x).i32GtS().if();
        for (let r = 0; r < 6; r++) {
          const load = (c: number) => {
            emitMatrixAt(f, src, j, KSM, 6 * r + c);
            f.v128Load();
          };
          combine(f, F4.at[x], load, k, zero);
          f.set(s[r]);
        }
        for (let y = 0; y < 4; y++) {
          if (y > 0) f.get(ny).i32(y).i32GtS().if();
          f.get(out).get(j).i32Add();
          if (y > 0) f.get(rowStep).i32(y).i32Mul().i32Add();
          if (x > 0) f.get(co4).i32(x).i32Mul().i32Add();
          combine(f, F4.at[y], (r) => f.get(s[r]), k, zero);
          f.get(bias).f32x4Add().get(floor).f32x4Max();
          f.v128Store();
          if (y > 0) f.end();
        }
        if (x > 0) f.end();
      }
    });
  });
  return f;
}

/**
 * `wino4_dyt(dy, d, t0, t1, ho, wo, co, th, tw, ksd, zero)`: {@linkcode winoOutputGrad} for
 * F(4x4, 3x3): each tile's 4x4 output gradients (zero outside `[ho, wo]`) to `A dy A^T`, 36
 * matrices.
 */
function winoOutputGrad4(): Fn {
  const [f, [DY, D, T0, T1, HO, WO, CO, TH, TW, KSD, ZERO]] = Fn.kernel(11);
  const t = f.local("i32"), b = f.local("i32"), ty = f.local("i32"), tx = f.local("i32");
  const q = f.local("i32"), co4 = f.local("i32"), j = f.local("i32"), dst = f.local("i32");
  const p = Array.from({ length: 16 }, () => f.local("i32"));
  const e = Array.from({ length: 4 }, () => f.local("v128"));
  const zero = f.local("v128");
  const k = constants(f, F4.at);
  // A = (A^T)^T: column r of A^T is row r of A
  const a = Array.from({ length: 6 }, (_, r) => F4.at.map((row) => row[r]));
  f.get(CO).i32(2).i32Shl().set(co4);
  f.v128Const0().set(zero);
  f.get(T0).set(t);
  f.for(t, T1, 1, () => {
    emitTile(f, t, [TH, TW], [b, ty, tx, q]);
    emitOutputPixels(f, [DY, HO, WO, ZERO], [b, ty, tx, co4], p, 2);
    f.get(D).get(t).get(T0).i32Sub().get(co4).i32Mul().i32Add().set(dst);
    f.i32(0).set(j);
    f.for(j, co4, 16, () => {
      for (let r = 0; r < 6; r++) {
        // e[x] = (A dy)[r][x], then row r of (A dy) A^T
        for (let x = 0; x < 4; x++) {
          combine(f, a[r], (y) => f.get(p[4 * y + x]).get(j).i32Add().v128Load(), k, zero);
          f.set(e[x]);
        }
        for (let c = 0; c < 6; c++) {
          emitMatrixAt(f, dst, j, KSD, 6 * r + c);
          combine(f, a[c], (x) => f.get(e[x]), k, zero);
          f.v128Store();
        }
      }
    });
  });
  return f;
}

/** F(2x2, 3x3)'s `G` (4x3). */
export const G2 = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]];

/**
 * `wino_ft_o` / `wino_ft_r` (and `wino4_` for F(4x4)'s `G`):
 * `(src, u, nred, nout, base, sr, sc, si, so, lo, hi)`, the transformed filter `U[k] = (G g
 * G^T)[k / a][k % a]` packed as `u[k][o / 8][i][o % 8]` (`nred` reduction channels `i`, `nout`
 * output channels `o`, a multiple of 8; `U[k]` at byte `u + k * nred * nout * 4`), where `g(r, c,
 * i, o) = src[base + r sr + c sc + i si + o so]` (floats; strides may be negative). `laneOut`:
 * four output channels a vector (`so` must be 1), for `o / 4` in `[lo, hi)`; else four reduction
 * channels a vector (`si` must be 1, `nred` a multiple of 4), for `o` in `[lo, hi)`. f32
 * arithmetic (`tests/_winograd_reference.ts` holds the float64 transforms it is tested against).
 */
function winoFilterTransform(gm: number[][], laneOut: boolean): Fn {
  const a = gm.length;
  const [f, [SRC, U, NRED, NOUT, BASE, SR, SC, SI, SO, LO, HI]] = Fn.kernel(11);
  const p = f.local("i32"), i = f.local("i32"), o = f.local("i32"), at = f.local("i32");
  const dst = f.local("i32"), ks4 = f.local("i32");
  const off = Array.from({ length: 9 }, () => f.local("i32"));
  const g = Array.from({ length: 9 }, () => f.local("v128"));
  const t = Array.from({ length: 3 * a }, () => f.local("v128"));
  const zero = f.local("v128"), v = f.local("v128");
  const k = constants(f, gm);
  f.v128Const0().set(zero);
  f.get(NRED).get(NOUT).i32Mul().i32(2).i32Shl().set(ks4);
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 3; c++) {
      f.get(SR).i32(r).i32Mul().get(SC).i32(c).i32Mul().i32Add().i32(2).i32Shl().set(
        off[3 * r + c],
      );
    }
  }
  f.get(LO).set(p);
  f.for(p, HI, 1, () => {
    if (laneOut) f.get(p).i32(2).i32Shl().set(o);
    else f.get(p).set(o);
    f.i32(0).set(i);
    f.for(i, NRED, laneOut ? 1 : 4, () => {
      // at = src + (base + i si + o so) * 4
      f.get(SRC).get(BASE).get(i).get(SI).i32Mul().i32Add().get(o).get(SO).i32Mul().i32Add().i32(2)
        .i32Shl().i32Add().set(at);
      for (let j = 0; j < 9; j++) f.get(at).get(off[j]).i32Add().v128Load().set(g[j]);
      // t = G g (a x 3)
      for (let r = 0; r < a; r++) {
        for (let c = 0; c < 3; c++) {
          combine(f, gm[r], (j) => f.get(g[3 * j + c]), k, zero);
          f.set(t[3 * r + c]);
        }
      }
      // dst = u + (((o >> 3) nred + i) 8 + (o & 7)) * 4
      f.get(U).get(o).i32(3).i32ShrU().get(NRED).i32Mul().get(i).i32Add().i32(3).i32Shl().get(o)
        .i32(7).i32And().i32Add().i32(2).i32Shl().i32Add().set(dst);
      // U = t G^T
      for (let r = 0; r < a; r++) {
        for (let c = 0; c < a; c++) {
          combine(f, gm[c], (j) => f.get(t[3 * r + j]), k, zero);
          if (laneOut) {
            f.set(v).get(dst);
            if (a * r + c > 0) f.get(ks4).i32(a * r + c).i32Mul().i32Add();
            f.get(v).v128Store();
          } else {
            // four reduction channels: 8 floats apart
            f.set(v);
            for (let l = 0; l < 4; l++) {
              f.get(dst);
              if (a * r + c > 0) f.get(ks4).i32(a * r + c).i32Mul().i32Add();
              f.get(v).f32x4ExtractLane(l).f32Store(32 * l);
            }
          }
        }
      }
    });
  });
  return f;
}

/**
 * `wino_fgt` / `wino4_fgt(du, dg, n, parts, pstride, lo, hi)`: the filter gradient `dg = G^T dU
 * G` (`[3, 3, n]`) of the transformed filter's gradient summed over `parts` partial sums, added
 * in part order (`dU` `[a * a, n]` at byte `du + p * pstride`), for the float quads `q` in `[lo,
 * hi)` (floats `4 q .. 4 q + 3` of each of the `n`).
 */
function winoFilterGradTransform(gm: number[][]): Fn {
  const a = gm.length;
  const gt = [0, 1, 2].map((r) => gm.map((row) => row[r])); // G^T (3 x a)
  const [f, [DU, DG, N, PARTS, PSTRIDE, LO, HI]] = Fn.kernel(7);
  const q = f.local("i32"), n4 = f.local("i32"), src = f.local("i32"), pp = f.local("i32");
  const addr = f.local("i32"), dst = f.local("i32");
  const u = Array.from({ length: a * a }, () => f.local("v128"));
  const t = Array.from({ length: 3 * a }, () => f.local("v128"));
  const zero = f.local("v128");
  const k = constants(f, gt);
  f.v128Const0().set(zero);
  f.get(N).i32(2).i32Shl().set(n4);
  f.get(LO).set(q);
  f.for(q, HI, 1, () => {
    f.get(DU).get(q).i32(4).i32Shl().i32Add().set(src);
    for (let j = 0; j < a * a; j++) {
      // u[j] = sum over the parts of du[p][j][4 q ..], in part order
      f.get(src);
      if (j > 0) f.get(n4).i32(j).i32Mul().i32Add();
      f.tee(addr).v128Load().set(u[j]);
      f.i32(1).set(pp);
      f.for(pp, PARTS, 1, () => {
        f.get(addr).get(PSTRIDE).i32Add().tee(addr).v128Load().get(u[j]).f32x4Add().set(u[j]);
      });
    }
    // t = G^T dU (3 x a), then dg = t G
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < a; c++) {
        combine(f, gt[r], (j) => f.get(u[a * j + c]), k, zero);
        f.set(t[a * r + c]);
      }
    }
    f.get(DG).get(q).i32(4).i32Shl().i32Add().set(dst);
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 3; c++) {
        f.get(dst);
        if (3 * r + c > 0) f.get(n4).i32(3 * r + c).i32Mul().i32Add();
        combine(f, gt[c], (j) => f.get(t[a * r + j]), k, zero);
        f.v128Store();
      }
    }
  });
  return f;
}

/** The Winograd kernels of the module. */
export function winogradModuleFunctions(fma: boolean): ModuleFunction[] {
  return [
    { name: "wino_in", fn: winoInput() },
    { name: "wino_gemm", fn: winoGemm(fma, WINO_MR) },
    { name: "wino_out", fn: winoOutput() },
    { name: "wino_dyt", fn: winoOutputGrad() },
    { name: "wino_wgemm", fn: winoFilterGemm(fma) },
    { name: "wino4_in", fn: winoInput4() },
    { name: "wino4_gemm", fn: winoGemm(fma, WINO_MR, 36) },
    { name: "wino4_out", fn: winoOutput4() },
    { name: "wino4_dyt", fn: winoOutputGrad4() },
    { name: "wino4_wgemm", fn: winoFilterGemm(fma, 36) },
    { name: "wino_wgemm0", fn: winoFilterGemm(fma, 16, true) },
    { name: "wino4_wgemm0", fn: winoFilterGemm(fma, 36, true) },
    { name: "wino_ft_o", fn: winoFilterTransform(G2, true) },
    { name: "wino_ft_r", fn: winoFilterTransform(G2, false) },
    { name: "wino4_ft_o", fn: winoFilterTransform(F4.g, true) },
    { name: "wino4_ft_r", fn: winoFilterTransform(F4.g, false) },
    { name: "wino_fgt", fn: winoFilterGradTransform(G2) },
    { name: "wino4_fgt", fn: winoFilterGradTransform(F4.g) },
  ];
}
