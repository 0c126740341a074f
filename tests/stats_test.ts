import assert from "node:assert/strict";
import {
  incompleteBeta,
  lnGamma,
  mean,
  normalCdf,
  pairedTTestGreater,
  pairedTTestPower,
  pairsForPower,
  sampleStd,
  studentTCdf,
  studentTSurvival,
  studentTUpperQuantile,
} from "../app/stats.ts";
import { assertClose } from "./_helpers.ts";

Deno.test("lnGamma matches factorials and Gamma(1/2) = sqrt(pi)", () => {
  let f = 1;
  for (let n = 1; n <= 20; n++) {
    assertClose(lnGamma(n), Math.log(f), 1e-12, `lnGamma(${n})`);
    f *= n;
  }
  assertClose(lnGamma(0.5), 0.5 * Math.log(Math.PI), 1e-12);
  assertClose(lnGamma(1e-3), Math.log(999.4237724845955), 1e-10); // Gamma(0.001)
});

Deno.test("the regularized incomplete beta matches closed forms", () => {
  // I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b, I_x(2, 3) = a binomial tail
  for (const x of [0, 0.05, 0.3, 0.5, 0.77, 0.999, 1]) {
    assertClose(incompleteBeta(3.5, 1, x), x ** 3.5, 1e-12);
    assertClose(incompleteBeta(1, 4.25, x), 1 - (1 - x) ** 4.25, 1e-12);
  }
  // sum_{j=2}^{4} C(4, j) 0.4^j 0.6^(4-j)
  assertClose(incompleteBeta(2, 3, 0.4), 0.3456 + 0.1536 + 0.0256, 1e-12);
  // symmetry I_x(a, b) = 1 - I_{1-x}(b, a)
  assertClose(incompleteBeta(7.5, 0.5, 0.9), 1 - incompleteBeta(0.5, 7.5, 0.1), 1e-12);
});

Deno.test("Student t: one-sided p-values match tables (scipy.stats.t.sf)", () => {
  assertClose(studentTSurvival(2.0, 10), 0.03669401738537018, 1e-10);
  assertClose(studentTSurvival(1.0, 5), 0.18160873382456144, 1e-10);
  assertClose(studentTSurvival(3.0, 1), 0.10241638234956672, 1e-10); // Cauchy: 1/2 - atan(3)/pi
  assertClose(studentTSurvival(3.0, 1), 0.5 - Math.atan(3) / Math.PI, 1e-12);
  assertClose(studentTSurvival(2.5, 2), 0.06480586011075541, 1e-10);
  // df = 2 has a closed form: P(T > t) = (1 - t / sqrt(2 + t^2)) / 2
  for (const t of [-3, -0.5, 0.1, 1.7, 8]) {
    assertClose(studentTSurvival(t, 2), (1 - t / Math.sqrt(2 + t * t)) / 2, 1e-12);
  }
  assert.equal(studentTSurvival(0, 7), 0.5);
  assertClose(studentTCdf(-2.0, 10), 0.03669401738537018, 1e-10);
  assertClose(studentTCdf(2.0, 10) + studentTSurvival(2.0, 10), 1, 1e-14);
  assert.equal(studentTSurvival(Infinity, 4), 0);
  assert.equal(studentTSurvival(-Infinity, 4), 1);
});

Deno.test("Student t approaches the normal distribution for large df", () => {
  // standard normal upper tails
  assertClose(studentTSurvival(1.959963984540054, 1e7), 0.025, 1e-6);
  assertClose(studentTSurvival(1.0, 1e7), 0.15865525393145707, 1e-6);
  assertClose(studentTSurvival(3.090232306167813, 1e7), 0.001, 1e-5);
});

Deno.test("mean and the sample standard deviation (ddof 1)", () => {
  assert.equal(mean([1, 2, 3, 4]), 2.5);
  assertClose(sampleStd([2, 4, 4, 4, 5, 5, 7, 9]), Math.sqrt(32 / 7), 1e-14);
  assert.ok(Number.isNaN(sampleStd([3])));
  assert.ok(Number.isNaN(mean([])));
});

Deno.test("paired t-test, one-sided, against a hand computation", () => {
  // differences 10, 5, 5, 15: mean 8.75, sd sqrt(68.75 / 3), t = 8.75 / (sd / 2)
  const a = [80, 70, 90, 75];
  const b = [70, 65, 85, 60];
  const r = pairedTTestGreater(a, b);
  const sd = Math.sqrt(68.75 / 3);
  assert.equal(r.n, 4);
  assert.equal(r.df, 3);
  assertClose(r.meanDiff, 8.75, 1e-14);
  assertClose(r.t, 8.75 / (sd / 2), 1e-12);
  assertClose(r.p, 0.017676423501258684, 1e-9); // scipy ttest_rel(..., alternative="greater")
  // the other direction
  assertClose(pairedTTestGreater(b, a).p, 1 - 0.017676423501258684, 1e-9);
  // degenerate cases
  assert.ok(Number.isNaN(pairedTTestGreater([1], [0]).p));
  assert.equal(pairedTTestGreater([2, 3], [1, 2]).p, 0); // every difference is +1
  assert.ok(Number.isNaN(pairedTTestGreater([1, 2], [1, 2]).p));
});

Deno.test("the normal CDF and the t quantile match scipy (stats.norm.cdf, stats.t.isf)", () => {
  assertClose(normalCdf(1.959963984540054), 0.975, 1e-13);
  assertClose(normalCdf(-3), 0.0013498980316300933, 1e-15);
  assertClose(normalCdf(0.5), 0.6914624612740131, 1e-13);
  assertClose(normalCdf(-8), 6.22096057427178e-16, 1e-20);
  assertClose(studentTUpperQuantile(0.05, 7), 1.8945786050613054, 1e-8);
  assertClose(studentTUpperQuantile(0.05, 2), 2.919985580355516, 1e-8);
});

Deno.test("paired t-test power matches the noncentral t (scipy.stats.nct.sf)", () => {
  // power = nct.sf(t.isf(0.05, n - 1), n - 1, (delta / sd) * sqrt(n)), scipy 1.10
  assertClose(pairedTTestPower(1, 1, 8), 0.8150194415641823, 1e-8);
  assertClose(pairedTTestPower(0.5, 1, 10), 0.42728982677207394, 1e-8);
  assertClose(pairedTTestPower(2.4, 6, 5), 0.1854968024211146, 1e-8);
  assertClose(pairedTTestPower(1.5, 1, 3), 0.5259334569654471, 1e-8);
  // no effect: the power is the level
  assertClose(pairedTTestPower(0, 3, 6), 0.05, 1e-8);
  // the smallest n with power >= 0.8 (scipy: 41 for delta 2.4, sd 6; 8 for delta = sd)
  assert.equal(pairsForPower(2.4, 6), 41);
  assert.equal(pairsForPower(1, 1), 8);
  assert.equal(pairsForPower(0.1, 100, 0.05, 0.8, 50), null);
});
