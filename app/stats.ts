/**
 * Small statistics for result tables: mean, sample standard deviation, the Student t
 * distribution (through the regularized incomplete beta function) and a one-sided paired t-test.
 *
 * @module
 */

/** Arithmetic mean (`NaN` for no values). */
export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

/** Sample standard deviation (ddof 1); `NaN` for fewer than two values. */
export function sampleStd(values: readonly number[]): number {
  const n = values.length;
  if (n < 2) return NaN;
  const m = mean(values);
  let ss = 0;
  for (const v of values) ss += (v - m) * (v - m);
  return Math.sqrt(ss / (n - 1));
}

const LANCZOS = [
  57.1562356658629235,
  -59.5979603554754912,
  14.1360979747417471,
  -0.491913816097620199,
  0.339946499848118887e-4,
  0.465236289270485756e-4,
  -0.983744753048795646e-4,
  0.158088703224912494e-3,
  -0.210264441724104883e-3,
  0.217439618115212643e-3,
  -0.164318106536763890e-3,
  0.844182239838527433e-4,
  -0.261908384015814087e-4,
  0.368991826595316234e-5,
];

/** `ln Gamma(x)` for `x > 0` (Lanczos approximation, Numerical Recipes 3rd ed. `gammln`). */
export function lnGamma(x: number): number {
  if (!(x > 0)) throw new RangeError(`lnGamma needs x > 0, got ${x}`);
  let y = x;
  let tmp = x + 5.24218750000000000;
  tmp = (x + 0.5) * Math.log(tmp) - tmp;
  let ser = 0.999999999999997092;
  for (const c of LANCZOS) ser += c / ++y;
  return tmp + Math.log((2.5066282746310005 * ser) / x);
}

/** Continued fraction of the incomplete beta function (Numerical Recipes `betacf`, modified Lentz). */
export function betacf(a: number, b: number, x: number): number {
  const EPS = 1e-15;
  const FPMIN = 1e-300;
  const MAXIT = 100000;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < FPMIN) d = FPMIN;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= MAXIT; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) return h;
  }
  throw new RangeError(`betacf did not converge for a=${a}, b=${b}, x=${x}`);
}

/** The regularized incomplete beta function `I_x(a, b)`, `a, b > 0`, `0 <= x <= 1`. */
export function incompleteBeta(a: number, b: number, x: number): number {
  if (!(a > 0) || !(b > 0)) throw new RangeError(`incompleteBeta needs a, b > 0`);
  if (!(x >= 0 && x <= 1)) throw new RangeError(`incompleteBeta needs 0 <= x <= 1, got ${x}`);
  if (x === 0 || x === 1) return x;
  const lnFront = lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) +
    b * Math.log1p(-x);
  const front = Math.exp(lnFront);
  // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
  // I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
  if (x < (a + 1) / (a + b + 2)) return (front * betacf(a, b, x)) / a;
  return 1 - (front * betacf(b, a, 1 - x)) / b;
}

/** `P(T <= t)` for Student's t with `df > 0` degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTCdf needs df > 0, got ${df}`);
  if (Number.isNaN(t)) return NaN;
  if (t === Infinity) return 1;
  if (t === -Infinity) return 0;
  // P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)
  const tail = 0.5 * incompleteBeta(df / 2, 0.5, df / (df + t * t));
  return t > 0 ? 1 - tail : tail;
}

/** `P(T > t)`: the one-sided upper-tail p-value of `t` (computed without cancellation). */
export function studentTSurvival(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTSurvival needs df > 0, got ${df}`);
  if (Number.isNaN(t)) return NaN;
  if (t === Infinity) return 0;
  if (t === -Infinity) return 1;
  const tail = 0.5 * incompleteBeta(df / 2, 0.5, df / (df + t * t));
  return t > 0 ? tail : 1 - tail;
}

/** The result of {@linkcode pairedTTestGreater}. */
export interface PairedTTest {
  /** Number of pairs. */
  n: number;
  /** Mean of the differences `a - b`. */
  meanDiff: number;
  /** Sample standard deviation of the differences (`NaN` with fewer than 2 pairs). */
  sd: number;
  /** The t statistic (`NaN` with fewer than 2 pairs or when every difference is 0). */
  t: number;
  /** Degrees of freedom, `n - 1`. */
  df: number;
  /** One-sided p-value of H1: mean(a - b) > 0 (`NaN` where `t` is). */
  p: number;
}

/**
 * One-sided paired t-test of H1 "`a` is greater than `b`" on pairs `(a[i], b[i])`.
 * When every difference is the same non-zero value, `t` is infinite and `p` is 0 or 1.
 */
export function pairedTTestGreater(a: readonly number[], b: readonly number[]): PairedTTest {
  if (a.length !== b.length) throw new RangeError("pairedTTestGreater needs as many a as b");
  const n = a.length;
  const diffs = a.map((v, i) => v - b[i]);
  const meanDiff = mean(diffs);
  if (n < 2) return { n, meanDiff, sd: NaN, t: NaN, df: Math.max(n - 1, 0), p: NaN };
  const sd = sampleStd(diffs);
  let t: number;
  if (sd === 0 || sd < 1e-15 * Math.abs(meanDiff)) {
    t = meanDiff === 0 ? NaN : meanDiff > 0 ? Infinity : -Infinity;
  } else t = meanDiff / (sd / Math.sqrt(n));
  return { n, meanDiff, sd, t, df: n - 1, p: studentTSurvival(t, n - 1) };
}

/** `P(Z <= x)` for a standard normal `Z` (through the regularized incomplete gamma: erf). */
export function normalCdf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  // Phi(x) = 1/2 (1 + erf(x / sqrt 2)), erf(z) = P(1/2, z^2) for z >= 0; P from its series
  // (z^2 < 1.5) or its continued fraction (Numerical Recipes' gser / gcf), to ~1e-15.
  const z = Math.abs(x) / Math.SQRT2;
  const a = 0.5;
  const z2 = z * z;
  let q: number; // Q(1/2, z^2) = erfc(z)
  if (z2 < 1.5) {
    let sum = 1 / a;
    let term = sum;
    for (let k = 1; k < 200; k++) {
      term *= z2 / (a + k);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-16) break;
    }
    q = 1 - sum * Math.exp(-z2 + a * Math.log(z2) - lnGamma(a));
  } else {
    let b = z2 + 1 - a;
    let c = 1 / 1e-300;
    let d = 1 / b;
    let h = d;
    for (let i = 1; i < 300; i++) {
      const an = -i * (i - a);
      b += 2;
      d = an * d + b;
      if (Math.abs(d) < 1e-300) d = 1e-300;
      c = b + an / c;
      if (Math.abs(c) < 1e-300) c = 1e-300;
      d = 1 / d;
      const del = d * c;
      h *= del;
      if (Math.abs(del - 1) < 1e-16) break;
    }
    q = Math.exp(-z2 + a * Math.log(z2) - lnGamma(a)) * h;
  }
  return x >= 0 ? 1 - q / 2 : q / 2;
}

/** The `t` with `P(T > t) = alpha` for Student's t with `df` degrees of freedom (bisection). */
export function studentTUpperQuantile(alpha: number, df: number): number {
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0, 1), got ${alpha}`);
  let lo = -1e3;
  let hi = 1e3;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (studentTSurvival(mid, df) > alpha) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * Power of the one-sided paired t-test at level `alpha` with `n` pairs to detect a true mean
 * difference `delta` when the differences have standard deviation `sd`:
 * `P(T' > t_(1-alpha, n-1))` for the noncentral t `T'` with noncentrality `delta sqrt(n) / sd`,
 * computed as `E_V[Phi(ncp - t sqrt(V / df))]` over `V ~ chi^2_df` (Simpson's rule).
 */
export function pairedTTestPower(delta: number, sd: number, n: number, alpha = 0.05): number {
  if (!(n >= 2)) throw new RangeError(`pairedTTestPower needs n >= 2, got ${n}`);
  if (!(sd > 0)) throw new RangeError(`pairedTTestPower needs sd > 0, got ${sd}`);
  const df = n - 1;
  const crit = studentTUpperQuantile(alpha, df);
  const ncp = (delta * Math.sqrt(n)) / sd;
  // chi^2_df density, integrated over [0, df + 60 sqrt(2 df) + 60]
  const logNorm = -(df / 2) * Math.LN2 - lnGamma(df / 2);
  const density = (v: number) =>
    v <= 0 ? 0 : Math.exp(logNorm + (df / 2 - 1) * Math.log(v) - v / 2);
  const f = (v: number) => normalCdf(ncp - crit * Math.sqrt(v / df)) * density(v);
  const top = df + 60 * Math.sqrt(2 * df) + 60;
  // the density has an integrable singularity at 0 for df = 1: substitute v = u^2 there
  const steps = 4000;
  const g = (u: number) => 2 * u * f(u * u);
  const h = Math.sqrt(top) / steps;
  let sum = g(0) + g(Math.sqrt(top));
  for (let i = 1; i < steps; i++) sum += (i % 2 === 1 ? 4 : 2) * g(i * h);
  return Math.min(1, Math.max(0, (sum * h) / 3));
}

/**
 * The fewest pairs (2 to `max`) at which the one-sided paired t-test at level `alpha` reaches
 * `power` for a true difference `delta` with difference standard deviation `sd`; `null` when even
 * `max` pairs do not.
 */
export function pairsForPower(
  delta: number,
  sd: number,
  alpha = 0.05,
  power = 0.8,
  max = 1000,
): number | null {
  for (let n = 2; n <= max; n++) if (pairedTTestPower(delta, sd, n, alpha) >= power) return n;
  return null;
}
