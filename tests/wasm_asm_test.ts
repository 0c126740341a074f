import assert from "node:assert/strict";
import { buildModule, Fn, Tile8 } from "../runtime/kernels/wasm_asm.ts";
import { hasRelaxedSimd } from "../runtime/kernels/wasm_gemm.ts";

/** Instantiates `fn` as the only function of a module on a fresh one-page memory. */
function run(fn: Fn): { call: (...args: number[]) => void; memory: WebAssembly.Memory } {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const bytes = buildModule({ memory: { shared: false }, functions: [{ name: "f", fn }] });
  const module = new WebAssembly.Module(bytes as BufferSource);
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return { call: instance.exports.f as (...args: number[]) => void, memory };
}

/** `f(out, start, bound)`: writes the values the loop's counter takes, after their count. */
function counter(to: boolean): Fn {
  const [f, [OUT, START, BOUND]] = Fn.kernel(3);
  const i = f.local("i32"), n = f.local("i32");
  f.get(START).set(i);
  const body = () => {
    f.get(n).i32(1).i32Add().set(n);
    f.get(OUT).get(n).i32(2).i32Shl().i32Add().get(i).i32Store();
  };
  if (to) f.forTo(i, BOUND, 3, body);
  else f.for(i, BOUND, 3, body);
  f.get(OUT).get(n).i32Store();
  return f;
}

Deno.test("Fn.for counts below its end and Fn.forTo up to and including its last", () => {
  for (
    const [to, start, bound, expected] of [
      [false, 2, 11, [2, 5, 8]],
      [true, 2, 11, [2, 5, 8, 11]],
      [false, 4, 4, []],
      [true, 4, 4, [4]],
      [false, 5, 4, []],
    ] as const
  ) {
    const { call, memory } = run(counter(to));
    call(0, start, bound);
    const out = new Int32Array(memory.buffer);
    assert.deepEqual(Array.from(out.subarray(1, 1 + out[0])), expected, `${to} ${start} ${bound}`);
  }
});

/**
 * `f(a, b, out, k)`: `out` (`[rows, 8]`) `(+)= A B` over `k` steps, `A` stored `[k, rows]`,
 * `B` `[k, 8]`; `accumulate` adds to what `out` holds instead of starting from zero.
 */
function tileProduct(rows: number, fma: boolean, accumulate: boolean): Fn {
  const [f, [A, B, OUT, K]] = Fn.kernel(4);
  const pa = f.local("i32"), pb = f.local("i32"), stride = f.local("i32"), k = f.local("i32");
  const tile = new Tile8(f, rows, fma);
  f.i32(32).set(stride);
  if (accumulate) tile.loadRows(OUT, stride);
  else tile.zero();
  f.get(A).set(pa);
  f.get(B).set(pb);
  f.for(k, K, 1, () => {
    tile.update(pb, 0, (r) => f.get(pa).v128Load32Splat(4 * r));
    f.get(pa).i32(4 * rows).i32Add().set(pa);
    f.get(pb).i32(32).i32Add().set(pb);
  });
  tile.storeRows(OUT, stride);
  return f;
}

Deno.test("Tile8 accumulates a rows-by-8 product and loads and stores its rows", () => {
  const rows = 3, steps = 2;
  // A [steps, rows] = [[1, 2, 3], [4, 5, 6]]; B [steps, 8] = [[1..8], [10, 0, 0, 0, 0, 0, 0, -1]]
  const a = [1, 2, 3, 4, 5, 6];
  const b = [1, 2, 3, 4, 5, 6, 7, 8, 10, 0, 0, 0, 0, 0, 0, -1];
  // row r of A^T B: a[r] * B[0] + a[rows + r] * B[1], by hand
  const expected = [
    [41, 2, 3, 4, 5, 6, 7, 4],
    [52, 4, 6, 8, 10, 12, 14, 11],
    [63, 6, 9, 12, 15, 18, 21, 18],
  ].flat();
  for (const fma of hasRelaxedSimd() ? [false, true] : [false]) {
    for (const accumulate of [false, true]) {
      const { call, memory } = run(tileProduct(rows, fma, accumulate));
      const heap = new Float32Array(memory.buffer);
      heap.set(a, 0);
      heap.set(b, 64);
      heap.fill(1, 128, 128 + 8 * rows);
      call(0, 4 * 64, 4 * 128, steps);
      const want = expected.map((x) => accumulate ? x + 1 : x);
      assert.deepEqual(
        Array.from(heap.subarray(128, 128 + 8 * rows)),
        want,
        `${fma} ${accumulate}`,
      );
    }
  }
});
