/**
 * The numbers `webgpu_mi_test.ts` checks, computed in a child process on the WebGPU adapter: the
 * fused mutual information (the joints as one `Conv2DBackpropFilter`, the tail as
 * `MiSslMiFromJoint` and its gradient kernel, `runtime/kernels/webgpu_mi.ts`) on `webgpu`
 * against the composed one (`plugins/regularizers/_mi_composed.ts`) on `cpu`, value and both
 * gradients on the 96 cases of `_mi_cases.ts`; the GPU programs one forward + backward pass runs,
 * fused and composed; and whether `kernels: builtin` keeps the composed version. Prints one JSON
 * object. Runs apart for the reason `_webgpu_checks.ts` does (the lockfile).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { describeAdapter, probeAdapter } from "../runtime/webgpu.ts";
import {
  mutualInformation,
  type MutualInformationOptions,
} from "../plugins/regularizers/mutual_information.ts";
import { mutualInformationComposed } from "../plugins/regularizers/_mi_composed.ts";
import { miFromJointAvailable } from "../runtime/kernels/mi_from_joint.ts";
import { MI_CASES, miErrors, type MiOutputs, miOutputs } from "./_mi_cases.ts";

/** What the child prints. */
export interface WebgpuMiChecks {
  adapter: string;
  /** Per case: `[value, dp, dq]` relative errors against the composed version on cpu. */
  cases: { name: string; errors: [number, number, number] }[];
  /** GPU programs per kernel of one forward + backward pass (radius 1, mask), fused. */
  fused: Record<string, number>;
  /** The same, composed (the reference path). */
  composed: Record<string, number>;
  /** Whether the fused tail is used with `kernels: custom` and `builtin`. */
  available: { custom: boolean; builtin: boolean };
  seconds: number;
}

const SEED = 7;

/** The composed reference, the mask applied as `mutualInformation` does. */
function composed(p: tf.Tensor4D, q: tf.Tensor4D, o: MutualInformationOptions): tf.Scalar {
  return tf.tidy(() =>
    mutualInformationComposed(o.mask ? tf.mul(p, o.mask) : p, o.mask ? tf.mul(q, o.mask) : q, {
      radius: o.radius ?? 1,
      eps: o.eps ?? 1.1920929e-7,
      symmetrize: o.symmetrize ?? true,
      marginalWeight: o.marginalWeight ?? 1,
    })
  );
}

/** GPU programs per kernel name of one forward + backward pass of `mi`. */
async function programs(
  mi: typeof composed,
): Promise<Record<string, number>> {
  const k = MI_CASES.find((c) => c.radius === 1 && c.mask && c.symmetrize && !c.zeros)!;
  await miOutputs(k, SEED, mi); // compile first
  const info = await tf.profile(async () => {
    await miOutputs(k, SEED, mi);
  });
  const counts: Record<string, number> = {};
  for (const kernel of info.kernels) {
    const extra = typeof kernel.extraInfo === "string" ? kernel.extraInfo.trim() : "";
    const n = extra === "" ? 0 : extra.split(", ").length;
    if (n > 0) counts[kernel.name] = (counts[kernel.name] ?? 0) + n;
  }
  return counts;
}

if (import.meta.main) {
  const t0 = performance.now();
  const adapter = await probeAdapter();
  if (adapter === null) throw new Error("no WebGPU adapter");
  await initBackend("cpu");
  const reference: MiOutputs[] = [];
  for (const k of MI_CASES) reference.push(await miOutputs(k, SEED, composed));
  await initBackend("webgpu");
  const cases: WebgpuMiChecks["cases"] = [];
  for (const [i, k] of MI_CASES.entries()) {
    cases.push({
      name: k.name,
      errors: miErrors(await miOutputs(k, SEED, mutualInformation), reference[i]),
    });
  }
  const fused = await programs(mutualInformation);
  const composedCounts = await programs(composed);
  const custom = miFromJointAvailable();
  // last: `builtin` puts back tfjs's kernels for the rest of the process
  await initBackend("webgpu", { kernels: "builtin" });
  const builtin = miFromJointAvailable();
  const result: WebgpuMiChecks = {
    adapter: describeAdapter(adapter),
    cases,
    fused,
    composed: composedCounts,
    available: { custom, builtin },
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  console.log(JSON.stringify(result));
}
