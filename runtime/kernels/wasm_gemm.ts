/**
 * Convolution kernels for the wasm backend as SIMD matrix products, generated at run time with
 * {@linkcode "./wasm_asm.ts"} into a small module that imports the backend's own memory and
 * works on the tensors where they lie.
 *
 * The shipped XNNPACK build is 128-bit SIMD without fused multiply-add; these kernels use
 * relaxed-SIMD `f32x4.relaxed_madd` (a fused multiply-add on x86 with FMA3) where the runtime
 * has it, and multiply + add otherwise. Both directions of a stride-1 NHWC convolution are one
 * "indirect GEMM" (a table of the input pixel under each filter tap, as XNNPACK does, so no
 * im2col copy is made):
 *
 * - forward and input gradient: `out[p, o] = sum_(t, i) x[src(p, t), i] W[t, i, o]`, tiles of
 *   `MR` pixels by 8 output channels;
 * - filter gradient: `dW[t, i, o] = sum_p x[src(p, t), i] dy[p, o]`, tiles of 4 input channels by
 *   8 output channels, over chunks of pixels that stay in cache.
 *
 * @module
 */
import { buildModule, Fn, madd, memoryImport, type ModuleFunction, Tile8 } from "./wasm_asm.ts";
import { bnModuleFunctions } from "./wasm_bn.ts";
import { winogradModuleFunctions } from "./wasm_winograd.ts";
import { pointwiseModuleFunctions } from "./wasm_pointwise.ts";

/** Rows (pixels) of a forward tile. */
export const FWD_MR = 6;
/** Pixels per cache chunk of the forward kernel. */
const FWD_MC = 64;
/** Pixels per cache chunk of the filter-gradient kernel. */
const WGRAD_PC = 512;

/** Whether this runtime validates relaxed SIMD (`f32x4.relaxed_madd`). */
export function hasRelaxedSimd(): boolean {
  const f = new Fn([], ["v128"]);
  f.v128Const0().v128Const0().v128Const0().f32x4RelaxedMadd();
  try {
    return WebAssembly.validate(buildModule({
      memory: { shared: false },
      functions: [{ name: "f", fn: f }],
    }) as BufferSource);
  } catch {
    return false;
  }
}

/**
 * `make_ptrs(idx, out, p0, p1, pixels, taps, x, zero, ci4, tapMajor)`: the byte address of the
 * input pixel of each (output pixel, tap) pair for output pixels `[p0, p1)` of `pixels`,
 * `idx[p, t] < 0 ? zero : x + idx[p, t] * ci4`, stored at `out[p, t]`, or at `out[t, p]` when
 * `tapMajor` is 1 (so that the threads can each take a range of pixels).
 */
function makePointers(): Fn {
  const [f, [IDX, OUT, P0, P1, PIXELS, TAPS, X, ZERO, CI4, TAP_MAJOR]] = Fn.kernel(10);
  const p = f.local("i32"), t = f.local("i32"), j = f.local("i32"), k = f.local("i32");
  f.get(P0).set(p);
  f.get(P0).get(TAPS).i32Mul().set(k);
  f.for(p, P1, 1, () => {
    f.i32(0).set(t);
    f.for(t, TAPS, 1, () => {
      f.get(IDX).get(k).i32(2).i32Shl().i32Add().i32Load().set(j);
      // destination index: tapMajor ? t * pixels + p : k
      f.get(OUT);
      f.get(t).get(PIXELS).i32Mul().get(p).i32Add().get(k).get(TAP_MAJOR).select();
      f.i32(2).i32Shl().i32Add();
      f.get(ZERO).get(X).get(j).get(CI4).i32Mul().i32Add().get(j).i32(0).i32LtS().select();
      f.i32Store();
      f.get(k).i32(1).i32Add().set(k);
    });
  });
  return f;
}

/**
 * `conv_fwd(ptrs, bp, out, m0, m1, ci, taps, co, zero, bias, relu)`: rows `[m0, m1)` of
 * `out[p, o] = sum_t sum_i ptrs[p, t][i] * bp[o / 8][t][i][o % 8]`, where `ptrs[p, t]` is the byte
 * address of the input pixel (channels contiguous) and `bp` the weights packed by blocks of 8
 * output channels (`co` a multiple of 8), plus `bias[o]` (float32, when `bias` is not 0), then
 * `max(., 0)` when `relu` is 1. With `unroll`, `ci` must be a multiple of 4.
 */
function convForward(fma: boolean, mr: number, unroll: boolean): Fn {
  const [f, [PTRS, BP, OUT, M0, M1, CI, TAPS, CO, ZERO, BIAS, RELU]] = Fn.kernel(11);
  const mc = f.local("i32"), mcEnd = f.local("i32"), m = f.local("i32");
  const nb = f.local("i32"), nbs = f.local("i32"), t = f.local("i32"), i = f.local("i32");
  const kb = f.local("i32"), k32 = f.local("i32"), co4 = f.local("i32"), o = f.local("i32");
  const p = Array.from({ length: mr }, () => f.local("i32"));
  const tile = new Tile8(f, mr, fma);
  const { acc, b0, b1, a } = tile;
  const step = unroll ? 4 : 1;
  f.get(CO).i32(3).i32ShrU().set(nbs);
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(TAPS).get(CI).i32Mul().i32(5).i32Shl().set(k32);
  // for (mc = m0; mc < m1; mc += MC)
  f.get(M0).set(mc);
  f.for(mc, M1, () => f.get(mcEnd).set(mc), () => {
    f.get(mc).i32(FWD_MC).i32Add().set(mcEnd);
    f.get(mcEnd).get(M1).i32GtS().if().get(M1).set(mcEnd).end();
    f.i32(0).set(nb);
    f.for(nb, nbs, 1, () => {
      f.get(mc).set(m);
      f.for(m, mcEnd, mr, () => {
        tile.zero();
        f.get(BP).get(nb).get(k32).i32Mul().i32Add().set(kb);
        f.i32(0).set(t);
        f.for(t, TAPS, 1, () => {
          for (let r = 0; r < mr; r++) {
            // p_r = m + r < mcEnd ? ptrs[(m + r) * taps + t] : zero
            f.get(ZERO).set(p[r]);
            f.get(m).i32(r).i32Add().get(mcEnd).i32LtS().if();
            f.get(PTRS).get(m).i32(r).i32Add().get(TAPS).i32Mul().get(t).i32Add().i32(2).i32Shl()
              .i32Add().i32Load().set(p[r]);
            f.end();
          }
          // for (i = ci; i > 0; i -= step)
          f.get(CI).set(i);
          f.loop();
          for (let u = 0; u < step; u++) {
            tile.update(kb, 32 * u, (r) => f.get(p[r]).v128Load32Splat(4 * u));
          }
          for (let r = 0; r < mr; r++) f.get(p[r]).i32(4 * step).i32Add().set(p[r]);
          f.get(kb).i32(32 * step).i32Add().set(kb);
          f.get(i).i32(-step).i32Add().tee(i).brIf(0);
          f.end();
        });
        // epilogue: + bias[o] (when bias != 0), then max(., 0) (when relu != 0)
        f.get(BIAS).if();
        f.get(BIAS).get(nb).i32(5).i32Shl().i32Add().v128Load(0).set(b0);
        f.get(BIAS).get(nb).i32(5).i32Shl().i32Add().v128Load(16).set(b1);
        for (let r = 0; r < mr; r++) {
          f.get(acc[2 * r]).get(b0).f32x4Add().set(acc[2 * r]);
          f.get(acc[2 * r + 1]).get(b1).f32x4Add().set(acc[2 * r + 1]);
        }
        f.end();
        f.get(RELU).if();
        f.v128Const0().set(a);
        for (const r of acc) f.get(r).get(a).f32x4Max().set(r);
        f.end();
        // store the valid rows
        for (let r = 0; r < mr; r++) {
          f.get(m).i32(r).i32Add().get(mcEnd).i32LtS().if();
          f.get(OUT).get(m).i32(r).i32Add().get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl()
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
 * `conv_wgrad(ptrs, dy, dw, p0, p1, ci, taps, co, pixels)`: adds to `dw[t, i, o]` (layout
 * `[taps, ci, co]`) the sum over pixels `p` in `[p0, p1)` of `ptrs[t, p][i] * dy[p, o]`
 * (`ptrs` tap-major over `pixels` pixels, `ci` a multiple of 4, `co` of 8).
 */
function convFilterGrad(fma: boolean): Fn {
  const [f, [PTRS, DY, DW, P0, P1, CI, TAPS, CO, PIXELS]] = Fn.kernel(9);
  const pc = f.local("i32"), pe = f.local("i32"), t = f.local("i32"), i0 = f.local("i32");
  const nb = f.local("i32"), p = f.local("i32"), ptr = f.local("i32"), i4 = f.local("i32");
  const dwp = f.local("i32"), dyp = f.local("i32"), ip = f.local("i32"), ptr1 = f.local("i32");
  const co4 = f.local("i32"), dyp1 = f.local("i32");
  const tile = new Tile8(f, 4, fma);
  f.get(CO).i32(2).i32Shl().set(co4);
  const body = (ptrLocal: number, dyLocal: number) =>
    tile.update(dyLocal, 0, (r) => f.get(ptrLocal).v128Load32Splat(4 * r));
  // for (pc = p0; pc < p1; pc += PC)
  f.get(P0).set(pc);
  f.for(pc, P1, () => f.get(pe).set(pc), () => {
    f.get(pc).i32(WGRAD_PC).i32Add().set(pe);
    f.get(pe).get(P1).i32GtS().if().get(P1).set(pe).end();
    f.i32(0).set(t);
    f.for(t, TAPS, 1, () => { // taps
      f.i32(0).set(i0);
      f.for(i0, CI, 4, () => { // input channels by 4
        f.get(i0).i32(2).i32Shl().set(i4);
        tile.forBlocks(nb, CO, () => {
          // dwp = dw + ((t * ci + i0) * co + nb * 8) * 4
          f.get(DW).get(t).get(CI).i32Mul().get(i0).i32Add().get(co4).i32Mul().i32Add().get(nb)
            .i32(5).i32Shl().i32Add().set(dwp);
          tile.loadRows(dwp, co4);
          // ip = ptrs + (t * pixels + pc) * 4; dyp = dy + pc * co4 + nb * 32
          f.get(PTRS).get(t).get(PIXELS).i32Mul().get(pc).i32Add().i32(2).i32Shl().i32Add().set(ip);
          f.get(DY).get(pc).get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(dyp);
          f.get(pc).set(p);
          // pairs of pixels
          f.forUntil(p, () => f.get(p).i32(1).i32Add().get(pe).i32GeS(), 2, () => {
            f.get(ip).i32Load(0).get(i4).i32Add().set(ptr);
            f.get(ip).i32Load(4).get(i4).i32Add().set(ptr1);
            f.get(dyp).get(co4).i32Add().set(dyp1);
            body(ptr, dyp);
            body(ptr1, dyp1);
            f.get(ip).i32(8).i32Add().set(ip);
            f.get(dyp1).get(co4).i32Add().set(dyp);
          });
          // the last pixel of an odd count
          f.get(p).get(pe).i32LtS().if();
          f.get(ip).i32Load(0).get(i4).i32Add().set(ptr);
          body(ptr, dyp);
          f.end();
          tile.storeRows(dwp, co4);
        });
      });
    });
  });
  return f;
}

/**
 * `conv_wgrad_any(ptrs, dy, dw, p0, p1, ci, taps, co, pixels)`: {@linkcode convFilterGrad} for
 * any `ci` (`co` a multiple of 8): tiles of 4 consecutive (tap, channel) rows of `dw`, each with
 * its own pointer row, for the first layer's single input channel.
 */
function convFilterGradAny(fma: boolean): Fn {
  const [f, [PTRS, DY, DW, P0, P1, CI, TAPS, CO, PIXELS]] = Fn.kernel(9);
  const pc = f.local("i32"), pe = f.local("i32"), m0 = f.local("i32"), rows = f.local("i32");
  const nb = f.local("i32"), p = f.local("i32"), po = f.local("i32"), dyp = f.local("i32");
  const co4 = f.local("i32"), m = f.local("i32"), addr = f.local("i32");
  const rb = Array.from({ length: 4 }, () => f.local("i32"));
  const ch = Array.from({ length: 4 }, () => f.local("i32"));
  const tile = new Tile8(f, 4, fma);
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(TAPS).get(CI).i32Mul().set(rows);
  f.get(P0).set(pc);
  f.for(pc, P1, () => f.get(pe).set(pc), () => { // pixel chunks
    f.get(pc).i32(WGRAD_PC).i32Add().set(pe);
    f.get(pe).get(P1).i32GtS().if().get(P1).set(pe).end();
    f.i32(0).set(m0);
    f.for(m0, rows, 4, () => { // row tiles
      for (let r = 0; r < 4; r++) {
        // row m = min(m0 + r, m0): invalid rows repeat row m0 and are not stored
        f.get(m0).i32(r).i32Add().set(m);
        f.get(m).get(rows).i32GeS().if().get(m0).set(m).end();
        f.get(PTRS).get(m).get(CI).i32DivU().get(PIXELS).i32Mul().i32(2).i32Shl().i32Add().set(
          rb[r],
        );
        f.get(m).get(CI).i32RemU().i32(2).i32Shl().set(ch[r]);
      }
      tile.forBlocks(nb, CO, () => {
        for (let r = 0; r < 4; r++) {
          f.get(m0).i32(r).i32Add().set(m);
          f.get(m).get(rows).i32LtS().if();
          f.get(DW).get(m).get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(addr);
          tile.loadRow(r, () => f.get(addr));
          f.else();
          tile.zeroRow(r);
          f.end();
        }
        f.get(DY).get(pc).get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(dyp);
        f.get(pc).i32(2).i32Shl().set(po);
        f.get(pc).set(p);
        f.loop();
        tile.update(
          dyp,
          0,
          (r) => f.get(rb[r]).get(po).i32Add().i32Load().get(ch[r]).i32Add().v128Load32Splat(),
        );
        f.get(po).i32(4).i32Add().set(po);
        f.get(dyp).get(co4).i32Add().set(dyp);
        f.get(p).i32(1).i32Add().tee(p).get(pe).i32LtS().brIf(0);
        f.end();
        for (let r = 0; r < 4; r++) {
          f.get(m0).i32(r).i32Add().set(m);
          f.get(m).get(rows).i32LtS().if();
          f.get(DW).get(m).get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(addr);
          tile.storeRow(r, () => f.get(addr));
          f.end();
        }
      });
    });
  });
  return f;
}

/**
 * `conv_wgrad_rows(x, dy, dw, r0, r1, rch, h, w, wo, ho, ci, co, kh, kw, top, left)`: the filter
 * gradient of a stride-1 convolution without a pointer table: over output rows `[r0, r1)` (image
 * x output row, `ho` per image) in chunks of `rch` rows, each tap reads a contiguous run of input
 * pixels per output row (the columns that fall in the padding are skipped: they add zero).
 * Adds into `dw` (`[kh, kw, ci, co]`); `ci` a multiple of 4, `co` of 8.
 */
function convFilterGradRows(fma: boolean): Fn {
  const [f, [X, DY, DW, R0, R1, RCH, H, W, WO, HO, CI, CO, KH, KW, TOP, LEFT]] = Fn.kernel(16);
  const rc = f.local("i32"), rce = f.local("i32"), tr = f.local("i32"), tc = f.local("i32");
  const x0 = f.local("i32"), x1 = f.local("i32"), i0 = f.local("i32"), nb = f.local("i32");
  const row = f.local("i32"), sy = f.local("i32"), b = f.local("i32"), y = f.local("i32");
  const ptr = f.local("i32"), dyp = f.local("i32"), cnt = f.local("i32"), dwp = f.local("i32");
  const ci4 = f.local("i32"), co4 = f.local("i32");
  const tile = new Tile8(f, 4, fma);
  f.get(CI).i32(2).i32Shl().set(ci4);
  f.get(CO).i32(2).i32Shl().set(co4);
  f.get(R0).set(rc);
  f.for(rc, R1, () => f.get(rce).set(rc), () => { // row chunks
    f.get(rc).get(RCH).i32Add().set(rce);
    f.get(rce).get(R1).i32GtS().if().get(R1).set(rce).end();
    f.i32(0).set(tr);
    f.for(tr, KH, 1, () => { // filter rows
      f.i32(0).set(tc);
      f.for(tc, KW, 1, () => { // filter columns
        // output columns whose input column x + tc - left is inside [0, w)
        f.get(LEFT).get(tc).i32Sub().set(x0);
        f.get(x0).i32(0).i32LtS().if().i32(0).set(x0).end();
        f.get(W).get(LEFT).i32Add().get(tc).i32Sub().set(x1);
        f.get(x1).get(WO).i32GtS().if().get(WO).set(x1).end();
        f.block();
        f.get(x0).get(x1).i32GeS().brIf(0);
        f.i32(0).set(i0);
        f.for(i0, CI, 4, () => { // input channels by 4
          tile.forBlocks(nb, CO, () => {
            // dwp = dw + (((tr * kw + tc) * ci + i0) * co + nb * 8) * 4
            f.get(DW).get(tr).get(KW).i32Mul().get(tc).i32Add().get(CI).i32Mul().get(i0).i32Add()
              .get(co4).i32Mul().i32Add().get(nb).i32(5).i32Shl().i32Add().set(dwp);
            tile.loadRows(dwp, co4);
            f.get(rc).set(row);
            f.for(row, rce, 1, () => { // output rows of the chunk
              f.get(row).get(HO).i32DivU().set(b);
              f.get(row).get(HO).i32RemU().set(y);
              f.get(y).get(tr).i32Add().get(TOP).i32Sub().set(sy);
              f.block();
              f.get(sy).i32(0).i32LtS().brIf(0);
              f.get(sy).get(H).i32GeS().brIf(0);
              // ptr = x + (((b * h + sy) * w + x0 + tc - left) * ci + i0) * 4
              f.get(X).get(b).get(H).i32Mul().get(sy).i32Add().get(W).i32Mul().get(x0).i32Add().get(
                tc,
              )
                .i32Add().get(LEFT).i32Sub().get(ci4).i32Mul().i32Add().get(i0).i32(2).i32Shl()
                .i32Add()
                .set(ptr);
              // dyp = dy + (row * wo + x0) * co4 + nb * 32
              f.get(DY).get(row).get(WO).i32Mul().get(x0).i32Add().get(co4).i32Mul().i32Add()
                .get(nb).i32(5).i32Shl().i32Add().set(dyp);
              f.get(x1).get(x0).i32Sub().set(cnt);
              f.loop();
              tile.update(dyp, 0, (r) => f.get(ptr).v128Load32Splat(4 * r));
              f.get(ptr).get(ci4).i32Add().set(ptr);
              f.get(dyp).get(co4).i32Add().set(dyp);
              f.get(cnt).i32(-1).i32Add().tee(cnt).brIf(0);
              f.end();
              f.end(); // skipped row
            });
            tile.storeRows(dwp, co4);
          });
        });
        f.end(); // empty column range
      });
    });
  });
  return f;
}

/**
 * `gather_rows(x, idx, out, r0, r1, cb)`: `out[r] = x[idx[r]]` for rows `r` in `[r0, r1)` of `cb`
 * bytes (a multiple of 4): the row copy of `GatherV2` along axis 0 (the warp's gathers), by
 * vectors then floats.
 */
function gatherRows(): Fn {
  const [f, [X, IDX, OUT, R0, R1, CB]] = Fn.kernel(6);
  const r = f.local("i32"), src = f.local("i32"), dst = f.local("i32"), k = f.local("i32");
  const vec = f.local("i32");
  f.get(CB).i32(-16).i32Add().set(vec); // last offset where a whole vector fits
  f.get(R0).set(r);
  f.for(r, R1, 1, () => {
    f.get(X).get(IDX).get(r).i32(2).i32Shl().i32Add().i32Load().get(CB).i32Mul().i32Add().set(src);
    f.get(OUT).get(r).get(CB).i32Mul().i32Add().set(dst);
    f.i32(0).set(k);
    f.forTo(k, vec, 16, () => {
      f.get(dst).get(k).i32Add().get(src).get(k).i32Add().v128Load().v128Store();
    });
    f.for(k, CB, 4, () => {
      f.get(dst).get(k).i32Add().get(src).get(k).i32Add().f32Load().f32Store();
    });
  });
  return f;
}

/**
 * `adam` / `adam_wd(w, g, m, v, w1, m1, v1, i0, i1, coef)`: one Adam update of floats `[i0, i1)`
 * (multiples of 4): `gi = g (+ wd w)`, `m1 = b1 m + a1 gi`, `v1 = b2 v + a2 gi gi`, `w1 = w -
 * (m1 / (sqrt(v1 / c2) + eps)) step`, in float32, with `coef` the float32 `[step, b1, a1, b2, a2,
 * c2, eps, wd]` (`a1 = 1 - b1`, `a2 = 1 - b2`); `adam_wd` adds the weight decay.
 */
function adamSweep(decay: boolean): Fn {
  const [f, [W, G, M, V, W1, M1, V1, I0, I1, COEF]] = Fn.kernel(10);
  const i = f.local("i32"), end = f.local("i32");
  const [step, b1, a1, b2, a2, c2, eps, wd] = Array.from({ length: 8 }, () => f.local("v128"));
  const gi = f.local("v128"), mi = f.local("v128"), vi = f.local("v128");
  [step, b1, a1, b2, a2, c2, eps, wd].forEach((l, k) => f.get(COEF).v128Load32Splat(4 * k).set(l));
  f.get(I0).i32(2).i32Shl().set(i);
  f.get(I1).i32(2).i32Shl().set(end);
  f.for(i, end, 16, () => {
    f.get(G).get(i).i32Add().v128Load();
    if (decay) f.get(wd).get(W).get(i).i32Add().v128Load().f32x4Mul().f32x4Add();
    f.set(gi);
    f.get(b1).get(M).get(i).i32Add().v128Load().f32x4Mul().get(a1).get(gi).f32x4Mul().f32x4Add()
      .set(mi);
    f.get(b2).get(V).get(i).i32Add().v128Load().f32x4Mul().get(a2).get(gi).f32x4Mul().get(gi)
      .f32x4Mul().f32x4Add().set(vi);
    f.get(M1).get(i).i32Add().get(mi).v128Store();
    f.get(V1).get(i).i32Add().get(vi).v128Store();
    f.get(W1).get(i).i32Add();
    f.get(W).get(i).i32Add().v128Load();
    f.get(mi).get(vi).get(c2).f32x4Div().f32x4Sqrt().get(eps).f32x4Add().f32x4Div().get(step)
      .f32x4Mul();
    f.f32x4Sub().v128Store();
  });
  return f;
}

/**
 * `segment_sum(x, ids, out, rows, cb, s0, s1)`: `out[ids[r], :] += x[r, :]` for every row `r` of
 * `rows` (`cb` bytes, a multiple of 4) whose id is in `[s0, s1)`, in row order: the float32
 * `UnsortedSegmentSum` (the gradient of the warp's gathers). Threads take disjoint id ranges, so
 * each output row gets the same additions in the same order whatever the split.
 */
function segmentSum(): Fn {
  const [f, [X, IDS, OUT, ROWS, CB, S0, S1]] = Fn.kernel(7);
  const r = f.local("i32"), src = f.local("i32"), dst = f.local("i32"), k = f.local("i32");
  const vec = f.local("i32"), id = f.local("i32"), span = f.local("i32");
  f.get(CB).i32(-16).i32Add().set(vec);
  f.get(S1).get(S0).i32Sub().set(span);
  f.get(X).set(src);
  f.for(r, ROWS, 1, () => {
    f.get(IDS).get(r).i32(2).i32Shl().i32Add().i32Load().set(id);
    // unsigned: ids below s0 wrap to large numbers
    f.get(id).get(S0).i32Sub().get(span).i32LtU().if();
    f.get(id).get(CB).i32Mul().get(OUT).i32Add().set(dst);
    f.i32(0).set(k);
    f.forTo(k, vec, 16, () => {
      f.get(dst).get(k).i32Add().get(dst).get(k).i32Add().v128Load().get(src).get(k).i32Add()
        .v128Load().f32x4Add().v128Store();
    });
    f.for(k, CB, 4, () => {
      f.get(dst).get(k).i32Add().get(dst).get(k).i32Add().f32Load().get(src).get(k).i32Add()
        .f32Load().f32Add().f32Store();
    });
    f.end();
    f.get(src).get(CB).i32Add().set(src);
  });
  return f;
}

/**
 * Register tiles `[rows, vectors]` of `mm_tn_<rows>x<vectors>` (at most 12 accumulators: x64 has
 * 16 SIMD registers), the tallest first for each width (`wasm_matmul.ts` takes the first that
 * fits).
 */
export const MM_TN_TILES: [number, number][] = [
  [8, 1],
  [4, 3],
  [4, 2],
  [4, 1],
  [2, 3],
  [2, 2],
  [2, 1],
  [1, 3],
  [1, 2],
  [1, 1],
];

/**
 * `mm_tn_<mr>x<nv>(a, b, out, k0, k1, m, n, i0, j0)`: the `mr x 4 nv` block at row `i0`, column
 * `4 j0` of `A^T B` over rows `k` in `[k0, k1)` of `a` `[K, m]` and `b` `[K, n]` (`n % 4 == 0`),
 * accumulated in registers and stored into `out` `[m, n]`: a vector of `b` and a float of `a`
 * loaded per multiply-add row instead of `mm_tn`'s load and store of `out` per row, whose
 * store-to-load chain bounded it (the U-Net head's filter gradient, `[pixels, 8]^T [pixels, 4]`,
 * and the MI's joint distributions, `[pixels, 4]^T [pixels, 36]`).
 */
function matMulTNTile(fma: boolean, mr: number, nv: number): Fn {
  const [f, [A, B, OUT, K0, K1, M, N, I0, J0]] = Fn.kernel(9);
  const k = f.local("i32"), pa = f.local("i32"), pb = f.local("i32");
  const mb = f.local("i32"), nb = f.local("i32");
  const acc = Array.from({ length: mr * nv }, () => f.local("v128"));
  const b = Array.from({ length: nv }, () => f.local("v128"));
  const a = f.local("v128");
  f.get(M).i32(2).i32Shl().set(mb);
  f.get(N).i32(2).i32Shl().set(nb);
  // pa = a + 4 (k0 m + i0), pb = b + 4 (k0 n + 4 j0)
  f.get(A).get(K0).get(M).i32Mul().get(I0).i32Add().i32(2).i32Shl().i32Add().set(pa);
  f.get(B).get(K0).get(N).i32Mul().get(J0).i32(2).i32Shl().i32Add().i32(2).i32Shl().i32Add()
    .set(pb);
  for (const l of acc) f.v128Const0().set(l);
  // k1 - k0 rows, counted down
  f.get(K1).get(K0).i32Sub().set(k);
  f.forUntil(k, () => f.get(k).i32(1).i32LtS(), () => f.get(k).i32(1).i32Sub().set(k), () => {
    for (let v = 0; v < nv; v++) f.get(pb).v128Load(16 * v).set(b[v]);
    for (let i = 0; i < mr; i++) {
      f.get(pa).v128Load32Splat(4 * i).set(a);
      for (let v = 0; v < nv; v++) madd(f, fma, a, b[v], acc[i * nv + v]);
    }
    f.get(pa).get(mb).i32Add().set(pa);
    f.get(pb).get(nb).i32Add().set(pb);
  });
  // out + 4 ((i0 + i) n + 4 j0) + 16 v
  f.get(OUT).get(I0).get(N).i32Mul().get(J0).i32(2).i32Shl().i32Add().i32(2).i32Shl().i32Add()
    .set(pa);
  for (let i = 0; i < mr; i++) {
    for (let v = 0; v < nv; v++) f.get(pa).get(acc[i * nv + v]).v128Store(16 * v);
    f.get(pa).get(nb).i32Add().set(pa);
  }
  return f;
}

/**
 * `mm_tn(a, b, out, k0, k1, m, n)`: `out[i, j] += sum_k a[k, i] b[k, j]` over rows `k` in
 * `[k0, k1)` of `a` `[K, m]` and `b` `[K, n]`: `A^T B` with a long inner dimension and a small
 * output (the MI's joint distributions), accumulated in `out` (float32, zeroed by the caller),
 * by vectors of `n` then floats.
 */
function matMulTN(): Fn {
  const [f, [A, B, OUT, K0, K1, M, N]] = Fn.kernel(7);
  const k = f.local("i32"), i = f.local("i32"), j = f.local("i32"), arow = f.local("i32");
  const brow = f.local("i32"), orow = f.local("i32"), nb = f.local("i32"), vec = f.local("i32");
  const s = f.local("f32"), sv = f.local("v128");
  f.get(N).i32(2).i32Shl().tee(nb).i32(-16).i32Add().set(vec);
  f.get(K0).set(k);
  f.for(k, K1, 1, () => {
    f.get(A).get(k).get(M).i32Mul().i32(2).i32Shl().i32Add().set(arow);
    f.get(B).get(k).get(nb).i32Mul().i32Add().set(brow);
    f.i32(0).set(i);
    f.get(OUT).set(orow);
    f.for(i, M, 1, () => {
      f.get(arow).get(i).i32(2).i32Shl().i32Add().f32Load().tee(s).f32x4Splat().set(sv);
      f.i32(0).set(j);
      f.forTo(j, vec, 16, () => {
        f.get(orow).get(j).i32Add().get(orow).get(j).i32Add().v128Load().get(brow).get(j).i32Add()
          .v128Load().get(sv).f32x4Mul().f32x4Add().v128Store();
      });
      f.for(j, nb, 4, () => {
        f.get(orow).get(j).i32Add().get(orow).get(j).i32Add().f32Load().get(brow).get(j).i32Add()
          .f32Load().get(s).f32Mul().f32Add().f32Store();
      });
      f.get(orow).get(nb).i32Add().set(orow);
    });
  });
  return f;
}

/**
 * `mm_rows(a, w, out, r0, r1, m, n)`: `out[r, :] = sum_i a[r, i] w[i, :]` for rows `r` in
 * `[r0, r1)` of `a` `[R, m]`, with a small `w` `[m, n]`: a tall product (the gradients of the
 * MI's joint distributions), by vectors of `n` (accumulated in a register) then floats.
 */
function matMulRows(): Fn {
  const [f, [A, W, OUT, R0, R1, M, N]] = Fn.kernel(7);
  const r = f.local("i32"), i = f.local("i32"), j = f.local("i32"), arow = f.local("i32");
  const orow = f.local("i32"), nb = f.local("i32"), vec = f.local("i32"), wp = f.local("i32");
  const acc = f.local("v128"), sacc = f.local("f32");
  f.get(N).i32(2).i32Shl().tee(nb).i32(-16).i32Add().set(vec);
  f.get(R0).set(r);
  f.for(r, R1, 1, () => {
    f.get(A).get(r).get(M).i32Mul().i32(2).i32Shl().i32Add().set(arow);
    f.get(OUT).get(r).get(nb).i32Mul().i32Add().set(orow);
    f.i32(0).set(j);
    f.forTo(j, vec, 16, () => {
      f.v128Const0().set(acc);
      f.get(W).get(j).i32Add().set(wp);
      f.i32(0).set(i);
      f.for(i, M, 1, () => {
        f.get(arow).get(i).i32(2).i32Shl().i32Add().v128Load32Splat().get(wp).v128Load().f32x4Mul()
          .get(acc).f32x4Add().set(acc);
        f.get(wp).get(nb).i32Add().set(wp);
      });
      f.get(orow).get(j).i32Add().get(acc).v128Store();
    });
    f.for(j, nb, 4, () => {
      f.f32(0).set(sacc);
      f.get(W).get(j).i32Add().set(wp);
      f.i32(0).set(i);
      f.for(i, M, 1, () => {
        f.get(arow).get(i).i32(2).i32Shl().i32Add().f32Load().get(wp).f32Load().f32Mul().get(sacc)
          .f32Add().set(sacc);
        f.get(wp).get(nb).i32Add().set(wp);
      });
      f.get(orow).get(j).i32Add().get(sacc).f32Store();
    });
  });
  return f;
}

/** Int32 slots of one record of `call_batch`: the function's index, then its arguments. */
export const BATCH_RECORD = 16;

/**
 * `call_batch(table, count)`: runs `count` calls listed at `table`, one record of
 * {@linkcode BATCH_RECORD} int32 slots each (the index of a function of this module, then its
 * arguments), in order. A part of a pool job (`wasm_pool.ts`) is then any list of kernel calls:
 * the batch-norm sweeps of one thread's pixels of every group, for instance.
 */
function callBatch(functions: ModuleFunction[]): Fn {
  const [f, [TABLE, COUNT]] = Fn.kernel(2);
  const r = f.local("i32"), rec = f.local("i32"), sel = f.local("i32");
  f.get(TABLE).set(rec);
  f.for(r, COUNT, 1, () => {
    f.get(rec).i32Load().set(sel);
    functions.forEach(({ fn }, index) => {
      if (fn.results.length > 0 || fn.params.length >= BATCH_RECORD) return;
      if (fn.params.some((t) => t !== "i32")) return;
      f.get(sel).i32(index).i32Eq().if();
      fn.params.forEach((_, i) => f.get(rec).i32Load(4 * (1 + i)));
      f.call(index);
      f.end();
    });
    f.get(rec).i32(4 * BATCH_RECORD).i32Add().set(rec);
  });
  return f;
}

/** The compiled kernels, bound to one memory. */
export interface GemmKernels {
  /** Whether the kernels use fused multiply-add. */
  readonly fma: boolean;
  /** The compiled module (helper threads instantiate it on the same shared memory). */
  readonly module: WebAssembly.Module;
  /** The memory the kernels work on. */
  readonly memory: WebAssembly.Memory;
  /** Forward kernel for any `ci`. */
  convForward(
    ptrs: number,
    bp: number,
    out: number,
    m0: number,
    m1: number,
    ci: number,
    taps: number,
    co: number,
    zero: number,
    bias: number,
    relu: number,
  ): void;
  /** Forward kernel for `ci % 4 == 0`. */
  convForward4(
    ptrs: number,
    bp: number,
    out: number,
    m0: number,
    m1: number,
    ci: number,
    taps: number,
    co: number,
    zero: number,
    bias: number,
    relu: number,
  ): void;
  convFilterGrad(
    ptrs: number,
    dy: number,
    dw: number,
    p0: number,
    p1: number,
    ci: number,
    taps: number,
    co: number,
    pixels: number,
  ): void;
  /** Filter gradient without a pointer table (`ci % 4 == 0`), by output rows. */
  convFilterGradRows(...args: number[]): void;
  /** Rows of `GatherV2` along axis 0: `(x, idx, out, r0, r1, rowBytes)`. */
  gatherRows(x: number, idx: number, out: number, r0: number, r1: number, cb: number): void;
  /** Runs a table of calls of this module's functions (see {@linkcode functionIndex}). */
  callBatch(table: number, count: number): void;
  /** A function's index in the module, as `call_batch` records name it. */
  functionIndex(name: string): number;
  /** Filter gradient for any `ci`. */
  convFilterGradAny(
    ptrs: number,
    dy: number,
    dw: number,
    p0: number,
    p1: number,
    ci: number,
    taps: number,
    co: number,
    pixels: number,
  ): void;
}

/** The module's bytes (its memory import as {@linkcode memoryImport} gives it). */
export function gemmModuleBytes(
  memory: { shared: boolean; pages?: number },
  fma = hasRelaxedSimd(),
): Uint8Array {
  return buildModule({ memory, functions: moduleFunctions(fma) });
}

/** The module's functions, `call_batch` last (it dispatches to the others by index). */
function moduleFunctions(fma: boolean): ModuleFunction[] {
  const functions: ModuleFunction[] = [
    { name: "make_ptrs", fn: makePointers() },
    { name: "conv_fwd", fn: convForward(fma, FWD_MR, false) },
    { name: "conv_fwd4", fn: convForward(fma, FWD_MR, true) },
    { name: "conv_wgrad", fn: convFilterGrad(fma) },
    { name: "conv_wgrad_any", fn: convFilterGradAny(fma) },
    { name: "conv_wgrad_rows", fn: convFilterGradRows(fma) },
    { name: "gather_rows", fn: gatherRows() },
    ...bnModuleFunctions("bn_"),
    { name: "segment_sum", fn: segmentSum() },
    { name: "mm_tn", fn: matMulTN() },
    ...MM_TN_TILES.map(([mr, nv]) => ({
      name: `mm_tn_${mr}x${nv}`,
      fn: matMulTNTile(fma, mr, nv),
    })),
    { name: "mm_rows", fn: matMulRows() },
    { name: "adam", fn: adamSweep(false) },
    { name: "adam_wd", fn: adamSweep(true) },
    ...winogradModuleFunctions(fma),
    ...pointwiseModuleFunctions(),
  ];
  return [...functions, { name: "call_batch", fn: callBatch(functions) }];
}

/** Compile and instantiate the kernels on `memory`. */
export function instantiateGemm(memory: WebAssembly.Memory): GemmKernels {
  const fma = hasRelaxedSimd();
  const module = new WebAssembly.Module(gemmModuleBytes(memoryImport(memory), fma) as BufferSource);
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const e = instance.exports as Record<string, (...args: number[]) => void>;
  // Every function is exported, in order: an export's position is its function index.
  const names = WebAssembly.Module.exports(module).map((d) => d.name);
  return {
    fma,
    module,
    memory,
    convForward: e.conv_fwd,
    convForward4: e.conv_fwd4,
    convFilterGrad: e.conv_wgrad,
    convFilterGradAny: e.conv_wgrad_any,
    convFilterGradRows: e.conv_wgrad_rows,
    gatherRows: e.gather_rows,
    callBatch: e.call_batch,
    functionIndex: (name: string) => {
      const i = names.indexOf(name);
      if (i < 0) throw new Error(`wasm kernels: no function ${name}`);
      return i;
    },
  };
}
