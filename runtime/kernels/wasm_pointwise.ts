/**
 * Element-wise kernels of the losses for the wasm backend, as SIMD sweeps of the kernel module
 * (`wasm_gemm.ts` builds them in, so the pool's threads run them too): `Exp` and `Log` (float32
 * polynomial approximations, the Cephes / `sse_mathfun` ones, within 2 ulp of the exact value),
 * `Softmax` over a last axis of 2 or 4 classes, `Maximum` and `GreaterEqual` with a scalar (the
 * clamp before a logarithm, and its gradient), `Multiply` and `Sub` by a `[..., 1]` tensor (the
 * warp's bilinear weights, the softmax gradient) and `Sum` over leading axes (the warp's bilinear
 * corners). tfjs's own kernels run these on one thread, `Softmax` through XNNPACK with a per-row
 * set-up and the broadcasting ones element by element (0.7-1.5 ms each on a `[4, 128, 128, 4]` map
 * here, the ACDC protocol's unlabeled batch). The kernels that choose them (and give anything else
 * to tfjs's) are in `wasm_elementwise.ts`.
 *
 * @module
 */
import { Fn, type ModuleFunction } from "./wasm_asm.ts";

// ---------------------------------------------------------------------------------------------
// exp and log of four lanes

/** Hoists a float constant into a v128 local (splat once, before the loops). */
function constant(f: Fn, x: number): number {
  const l = f.local("v128");
  f.f32(x).f32x4Splat().set(l);
  return l;
}

/** Hoists an int32 constant into a v128 local. */
function intConstant(f: Fn, x: number): number {
  const l = f.local("v128");
  f.i32(x).i32x4Splat().set(l);
  return l;
}

/**
 * Emits a loop of `i` (an i32 local, from its current value) up to the local `end`: four lanes a
 * step while four remain (`body(4)`), then one (`body(1)`, on lane 0 of its vectors).
 */
function fourThenOne(f: Fn, i: number, end: number, body: (lanes: 4 | 1) => void): void {
  for (const lanes of [4, 1] as const) {
    f.forUntil(i, () => f.get(i).i32(lanes).i32Add().get(end).i32GtS(), lanes, () => {
      body(lanes);
    });
  }
}

/** Loads four floats at the address on the stack, or one splat to four lanes. */
function loadLanes(f: Fn, lanes: 4 | 1): void {
  if (lanes === 4) f.v128Load();
  else f.f32Load().f32x4Splat();
}

/** Stores the vector on the stack (address below it): its four lanes, or lane 0. */
function storeLanes(f: Fn, lanes: 4 | 1): void {
  if (lanes === 4) f.v128Store();
  else f.f32x4ExtractLane(0).f32Store();
}

/** Emits `out = exp(v)` for the v128 locals `v`, `out`; `c` from {@linkcode expConstants}. */
function emitExp(f: Fn, c: ReturnType<typeof expConstants>, v: number, out: number): void {
  const { t, fx, y } = c.tmp;
  // x clamped to [lo, hi] (exp(hi) ~ 2.4e38 keeps 2^n finite); NaN stays NaN
  f.get(v).get(c.hi).f32x4Min().get(c.lo).f32x4Max().set(t);
  f.get(t).get(c.log2e).f32x4Mul().f32x4Nearest().set(fx);
  // r = x - n ln2 (in two parts for precision)
  f.get(t).get(fx).get(c.c1).f32x4Mul().f32x4Sub().get(fx).get(c.c2).f32x4Mul().f32x4Sub().set(t);
  f.get(c.p[0]);
  for (let i = 1; i < c.p.length; i++) f.get(t).f32x4Mul().get(c.p[i]).f32x4Add();
  // y = p(r) r^2 + r + 1
  f.get(t).f32x4Mul().get(t).f32x4Mul().get(t).f32x4Add().get(c.one).f32x4Add().set(y);
  // 2^n: (n + 127) << 23 as float bits
  f.get(fx).i32x4TruncSatF32x4S().get(c.bias).i32x4Add().i32(23).i32x4Shl();
  f.get(y).f32x4Mul().set(y);
  // beyond the range: 0 below, +inf above (NaN compares false: stays)
  f.get(c.zero).get(y).get(v).get(c.lo).f32x4Lt().v128Bitselect().set(y);
  f.get(c.inf).get(y).get(v).get(c.max).f32x4Gt().v128Bitselect().set(out);
}

function expConstants(f: Fn) {
  return {
    lo: constant(f, -87.3365478515625),
    hi: constant(f, 88.3762626647949),
    max: constant(f, 88.72283935546875),
    log2e: constant(f, 1.44269504088896341),
    c1: constant(f, 0.693359375),
    c2: constant(f, -2.12194440e-4),
    p: [
      1.9875691500e-4,
      1.3981999507e-3,
      8.3334519073e-3,
      4.1665795894e-2,
      1.6666665459e-1,
      5.0000001201e-1,
    ].map((x) => constant(f, x)),
    one: constant(f, 1),
    zero: constant(f, 0),
    inf: constant(f, Infinity),
    bias: intConstant(f, 127),
    tmp: { t: f.local("v128"), fx: f.local("v128"), y: f.local("v128") },
  };
}

function logConstants(f: Fn) {
  return {
    minNormal: constant(f, 1.1754943508222875e-38),
    scale: constant(f, 33554432), // 2^25, for subnormal inputs
    scaleExp: constant(f, 25),
    mantMask: intConstant(f, 0x007fffff),
    half: intConstant(f, 0x3f000000),
    bias: intConstant(f, 126),
    sqrtHalf: constant(f, 0.707106781186547524),
    one: constant(f, 1),
    halfF: constant(f, 0.5),
    q1: constant(f, -2.12194440e-4),
    q2: constant(f, 0.693359375),
    p: [
      7.0376836292e-2,
      -1.1514610310e-1,
      1.1676998740e-1,
      -1.2420140846e-1,
      1.4249322787e-1,
      -1.6668057665e-1,
      2.0000714765e-1,
      -2.4999993993e-1,
      3.3333331174e-1,
    ].map((x) => constant(f, x)),
    zero: constant(f, 0),
    inf: constant(f, Infinity),
    negInf: constant(f, -Infinity),
    nan: constant(f, NaN),
    tmp: {
      x: f.local("v128"),
      e: f.local("v128"),
      m: f.local("v128"),
      z: f.local("v128"),
      y: f.local("v128"),
      mask: f.local("v128"),
    },
  };
}

/** Emits `out = log(v)` for the v128 locals `v`, `out`; `c` from {@linkcode logConstants}. */
function emitLog(f: Fn, c: ReturnType<typeof logConstants>, v: number, out: number): void {
  const { x, e, m, z, y, mask } = c.tmp;
  // subnormal inputs scaled by 2^25 (their exponent corrected below)
  f.get(v).get(c.minNormal).f32x4Lt().set(mask);
  f.get(v).get(c.scale).f32x4Mul().get(v).get(mask).v128Bitselect().set(x);
  // e = exponent + 1 (mantissa in [0.5, 1)), minus 25 for the scaled ones
  f.get(x).i32(23).i32x4ShrU().get(c.bias).i32x4Sub().f32x4ConvertI32x4S();
  f.get(c.scaleExp).get(c.zero).get(mask).v128Bitselect().f32x4Sub().set(e);
  f.get(x).get(c.mantMask).v128And().get(c.half).v128Or().set(m);
  // m < sqrt(1/2): m = 2m - 1, e -= 1; else m = m - 1
  f.get(m).get(c.sqrtHalf).f32x4Lt().set(mask);
  f.get(m).get(c.one).f32x4Sub().get(m).get(c.zero).get(mask).v128Bitselect().f32x4Add().set(m);
  f.get(e).get(c.one).get(c.zero).get(mask).v128Bitselect().f32x4Sub().set(e);
  f.get(m).get(m).f32x4Mul().set(z);
  f.get(c.p[0]);
  for (let i = 1; i < c.p.length; i++) f.get(m).f32x4Mul().get(c.p[i]).f32x4Add();
  f.get(m).f32x4Mul().get(z).f32x4Mul();
  f.get(e).get(c.q1).f32x4Mul().f32x4Add();
  f.get(z).get(c.halfF).f32x4Mul().f32x4Sub().set(y);
  f.get(m).get(y).f32x4Add().get(e).get(c.q2).f32x4Mul().f32x4Add().set(y);
  // log 0 = -inf, log of a negative or NaN = NaN, log inf = inf
  f.get(c.negInf).get(y).get(v).get(c.zero).f32x4Eq().v128Bitselect().set(y);
  f.get(c.inf).get(y).get(v).get(c.inf).f32x4Eq().v128Bitselect().set(y);
  // NaN where not (v >= 0): negatives and NaN
  f.get(y).get(c.nan).get(v).get(c.zero).f32x4Ge().v128Bitselect().set(out);
}

/**
 * `pw_exp` / `pw_log(x, out, i0, i1)`: `out[i] = exp(x[i])` / `log(x[i])` for floats `[i0, i1)`;
 * four at a time, the rest one lane at a time.
 */
function unarySweep(which: "exp" | "log"): Fn {
  const [f, [X, OUT, I0, I1]] = Fn.kernel(4);
  const i = f.local("i32"), v = f.local("v128"), r = f.local("v128");
  const emit = which === "exp"
    ? ((c) => (a: number, b: number) => emitExp(f, c, a, b))(expConstants(f))
    : ((c) => (a: number, b: number) => emitLog(f, c, a, b))(logConstants(f));
  f.get(I0).set(i);
  fourThenOne(f, i, I1, (lanes) => {
    f.get(X).get(i).i32(2).i32Shl().i32Add();
    loadLanes(f, lanes);
    f.set(v);
    emit(v, r);
    f.get(OUT).get(i).i32(2).i32Shl().i32Add().get(r);
    storeLanes(f, lanes);
  });
  return f;
}

/**
 * `pw_softmax4` / `pw_softmax2(x, out, q0, q1)`: softmax over the last axis of 4 (one pixel a
 * vector) or 2 classes (two pixels a vector), vectors `[q0, q1)`: `exp(x - max) / sum`.
 */
function softmaxSweep(classes: 2 | 4): Fn {
  const [f, [X, OUT, Q0, Q1]] = Fn.kernel(4);
  const q = f.local("i32"), v = f.local("v128"), e = f.local("v128"), t = f.local("v128");
  const c = expConstants(f);
  // lane permutations: within pairs (2 classes); halves, then pairs (4 classes)
  const pairs = Fn.floatLanes([1, 0, 3, 2]), halves = Fn.floatLanes([2, 3, 0, 1]);
  const reduce = (x: number, op: "max" | "add") => {
    const apply = () => (op === "max" ? f.f32x4Max() : f.f32x4Add());
    if (classes === 4) {
      f.get(x).get(x).i8x16Shuffle(halves).get(x);
      apply();
      f.set(t);
      f.get(t).get(t).i8x16Shuffle(pairs).get(t);
      apply();
    } else {
      f.get(x).get(x).i8x16Shuffle(pairs).get(x);
      apply();
    }
  };
  f.get(Q0).set(q);
  f.for(q, Q1, 1, () => {
    f.get(X).get(q).i32(4).i32Shl().i32Add().v128Load().set(v);
    f.get(v);
    reduce(v, "max");
    f.f32x4Sub().set(v);
    emitExp(f, c, v, e);
    f.get(e);
    reduce(e, "add");
    f.f32x4Div().set(v);
    f.get(OUT).get(q).i32(4).i32Shl().i32Add().get(v).v128Store();
  });
  return f;
}

/**
 * `pw_max_s(x, s, out, i0, i1)`: `out[i] = max(x[i], s[0])`; `pw_ge_s(x, s, out, i0, i1)`:
 * the byte `x[i] >= s[0]` (a bool tensor), for elements `[i0, i1)`.
 */
function scalarSweep(which: "max" | "ge"): Fn {
  const [f, [X, S, OUT, I0, I1]] = Fn.kernel(5);
  const i = f.local("i32"), sv = f.local("v128"), s = f.local("f32");
  f.get(S).f32Load().set(s);
  f.get(s).f32x4Splat().set(sv);
  f.get(I0).set(i);
  if (which === "max") {
    fourThenOne(f, i, I1, (lanes) => {
      f.get(OUT).get(i).i32(2).i32Shl().i32Add();
      f.get(X).get(i).i32(2).i32Shl().i32Add();
      loadLanes(f, lanes);
      f.get(sv).f32x4Max();
      storeLanes(f, lanes);
    });
  } else {
    f.for(i, I1, 1, () => {
      f.get(OUT).get(i).i32Add();
      f.get(X).get(i).i32(2).i32Shl().i32Add().f32Load().get(s).f32Ge().i32Store8();
    });
  }
  return f;
}

/**
 * `mul_rows` / `pw_sub_rows(a, b, out, r0, r1, cb)`: `out[r, :] = a[r, :] * b[r]` / `a[r, :] -
 * b[r]` for rows `[r0, r1)` of `cb` bytes (a multiple of 4): a `[..., C]` tensor and a `[..., 1]`
 * one.
 */
function rowsByScalar(op: "mul" | "sub"): Fn {
  const [f, [A, B, OUT, R0, R1, CB]] = Fn.kernel(6);
  const r = f.local("i32"), src = f.local("i32"), dst = f.local("i32"), k = f.local("i32");
  const vec = f.local("i32"), s = f.local("f32"), sv = f.local("v128");
  f.get(CB).i32(-16).i32Add().set(vec);
  f.get(R0).set(r);
  f.for(r, R1, 1, () => {
    f.get(B).get(r).i32(2).i32Shl().i32Add().f32Load().set(s);
    f.get(s).f32x4Splat().set(sv);
    f.get(r).get(CB).i32Mul().tee(k).get(A).i32Add().set(src);
    f.get(k).get(OUT).i32Add().set(dst);
    f.i32(0).set(k);
    f.forTo(k, vec, 16, () => {
      f.get(dst).get(k).i32Add().get(src).get(k).i32Add().v128Load().get(sv);
      if (op === "mul") f.f32x4Mul();
      else f.f32x4Sub();
      f.v128Store();
    });
    f.for(k, CB, 4, () => {
      f.get(dst).get(k).i32Add().get(src).get(k).i32Add().f32Load().get(s);
      if (op === "mul") f.f32Mul();
      else f.f32Sub();
      f.f32Store();
    });
  });
  return f;
}

/**
 * `pw_sum_lead(x, out, m, r, j0, j1)`: `out[j] = sum_k x[k, j]` over the `m` rows of `r` floats,
 * for `j` in `[j0, j1)`, each sum in row order from 0 in float32: a `Sum` over leading axes (the
 * warp's four bilinear corners).
 */
function sumLeading(): Fn {
  const [f, [X, OUT, M, R, J0, J1]] = Fn.kernel(6);
  const j = f.local("i32"), k = f.local("i32"), at = f.local("i32"), stride = f.local("i32");
  const acc = f.local("v128");
  f.get(R).i32(2).i32Shl().set(stride);
  f.get(J0).set(j);
  fourThenOne(f, j, J1, (lanes) => {
    f.v128Const0().set(acc);
    f.get(X).get(j).i32(2).i32Shl().i32Add().set(at);
    f.i32(0).set(k);
    f.for(k, M, 1, () => {
      f.get(acc).get(at);
      loadLanes(f, lanes);
      f.f32x4Add().set(acc);
      f.get(at).get(stride).i32Add().set(at);
    });
    f.get(OUT).get(j).i32(2).i32Shl().i32Add().get(acc);
    storeLanes(f, lanes);
  });
  return f;
}

/** The functions of this file, for the kernel module (`wasm_gemm.ts`). */
export function pointwiseModuleFunctions(): ModuleFunction[] {
  return [
    { name: "pw_exp", fn: unarySweep("exp") },
    { name: "pw_log", fn: unarySweep("log") },
    { name: "pw_softmax4", fn: softmaxSweep(4) },
    { name: "pw_softmax2", fn: softmaxSweep(2) },
    { name: "pw_max_s", fn: scalarSweep("max") },
    { name: "pw_ge_s", fn: scalarSweep("ge") },
    { name: "mul_rows", fn: rowsByScalar("mul") },
    { name: "pw_sub_rows", fn: rowsByScalar("sub") },
    { name: "pw_sum_lead", fn: sumLeading() },
  ];
}
