/**
 * The numbers `webgpu_loss_test.ts` checks, computed in a child process on the WebGPU adapter:
 * the fused KL consistency (`runtime/kernels/webgpu_kl.ts`), softmax cross-entropy
 * (`webgpu_softmax_ce.ts`) and softmax (`webgpu_softmax.ts`) on `webgpu` against tfjs's composed
 * ops on `cpu`, values and
 * gradients, on the cases of `_loss_cases.ts` (odd shapes, every kind of mask, over 65,535
 * pixels); the GPU programs of each kernel; whether a large case is bit-identical on two runs;
 * and whether the losses take the fused kernels with `kernels: custom` and `builtin`. Prints one
 * JSON object. Runs apart for the reason `_webgpu_checks.ts` does (the lockfile).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { describeAdapter, probeAdapter } from "../runtime/webgpu.ts";
import { klFusedAvailable } from "../runtime/kernels/kl_fused.ts";
import { softmaxCeAvailable } from "../runtime/kernels/softmax_ce.ts";
import { softmaxFusedAvailable } from "../runtime/kernels/softmax_fused.ts";
import { evaluate, type FusedLoss, lossCases, outputFloors, relativeError } from "./_loss_cases.ts";

/** What `webgpu_loss_test.ts` asserts. */
export interface WebgpuLossChecks {
  adapter: string;
  /** Per loss and case: relative errors of the loss and each gradient against cpu's composed. */
  cases: { name: string; errors: number[] }[];
  /** GPU programs per kernel of one forward and backward pass, per loss. */
  programs: Record<string, Record<string, number>>;
  /** Whether the large cases gave the same bits twice (the loss and every gradient). */
  deterministic: boolean;
  /** Whether the losses take the fused kernels on webgpu with `custom` and `builtin`. */
  available: { custom: boolean; builtin: boolean };
  seconds: number;
}

/** GPU programs per kernel name of `evaluate` (forward + backward) on the active backend. */
async function programs(loss: FusedLoss): Promise<Record<string, number>> {
  // [3, 9, 11, 4], a binary mask (the softmax: none)
  const c = lossCases(false)[loss === "softmax" ? 4 : 5];
  const info = await tf.profile(async () => {
    await evaluate(c, loss, true);
  });
  const counts: Record<string, number> = {};
  for (const k of info.kernels) {
    if (!k.name.startsWith("MiSsl")) continue;
    const extra = typeof k.extraInfo === "string" ? k.extraInfo.trim() : "";
    counts[k.name] = (counts[k.name] ?? 0) + (extra === "" ? 0 : extra.split(", ").length);
  }
  return counts;
}

function sameBits(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length &&
    a.every((x, i) => x.length === b[i].length && x.every((v, j) => Object.is(v, b[i][j])));
}

if (import.meta.main) {
  const t0 = performance.now();
  const adapter = await probeAdapter();
  if (adapter === null) throw new Error("no WebGPU adapter");
  const all = lossCases();
  const cases: WebgpuLossChecks["cases"] = [];
  let deterministic = true;
  for (const loss of ["kl", "ce", "softmax"] as const) {
    const mine = loss === "softmax" ? all.filter((c) => c.mask === null) : all;
    await initBackend("cpu");
    const want: Float32Array[][] = [];
    for (const c of mine) want.push(await evaluate(c, loss, false));
    await initBackend("webgpu");
    for (const [i, c] of mine.entries()) {
      const got = await evaluate(c, loss, true);
      const floors = outputFloors(c, loss);
      cases.push({
        name: `${loss} ${c.name}`,
        errors: got.map((g, k) => relativeError(g, want[i][k], floors[k])),
      });
      if (c.shape[1] > 100) deterministic &&= sameBits(got, await evaluate(c, loss, true));
    }
  }
  const counts = {
    kl: await programs("kl"),
    ce: await programs("ce"),
    softmax: await programs("softmax"),
  };
  const custom = klFusedAvailable() && softmaxCeAvailable() && softmaxFusedAvailable();
  // last: `builtin` puts back tfjs's kernels for the rest of the process
  await initBackend("webgpu", { kernels: "builtin" });
  const builtin = klFusedAvailable() || softmaxCeAvailable() || softmaxFusedAvailable();
  const result: WebgpuLossChecks = {
    adapter: describeAdapter(adapter),
    cases,
    programs: counts,
    deterministic,
    available: { custom, builtin },
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  console.log(JSON.stringify(result));
}
