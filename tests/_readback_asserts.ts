/**
 * The assertions on `_readback_checks.ts`'s numbers that hold on every backend (`readback_test.ts`
 * on `wasm`, `webgpu_readback_test.ts` on `webgpu`).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ReadbackChecks } from "./_readback_checks.ts";

/** metrics.jsonl: one complete line per iteration, the same keys and values (within `tol`). */
export function assertSameMetrics(m: ReadbackChecks["metrics"], tol: number): void {
  assert.deepEqual(m.iterationsStep, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(m.iterationsLog, [1, 2, 3, 4, 5, 6]);
  assert.ok(m.keysEqual, "the same keys, in the same order");
  assert.ok(
    typeof m.maxDiff === "number" && m.maxDiff <= tol,
    `largest difference ${m.maxDiff} (${m.worst})`,
  );
  // the steps' lines come before the validation that follows them
  assert.deepEqual(m.orderLog.map(([i, k]) => `${i}${k}`), [
    "1step",
    "2step",
    "3step",
    "4step",
    "5step",
    "6step",
    "6val",
  ]);
}

/**
 * The NaN step gated on the device equals the step skipped on the host (within `tol`), changes
 * nothing, and is counted once read; a checkpoint taken before the step was read counts it.
 */
export function assertNanGated(c: ReadbackChecks, tol: number): void {
  const n = c.nan;
  assert.ok(n.tensors > 50, `${n.tensors} checkpointed tensors`);
  assert.ok(
    typeof n.maxDiff === "number" && n.maxDiff <= tol,
    `gated against skipped on the host: ${n.maxDiff}`,
  );
  assert.ok(
    typeof n.changedByBadStep === "number" && n.changedByBadStep <= tol,
    `the bad step changed a tensor by ${n.changedByBadStep}`,
  );
  assert.deepEqual(n.metaStep, { adamStep: 2, skippedSteps: 1 });
  assert.deepEqual(n.metaLog, { adamStep: 2, skippedSteps: 1 });
  // 4 iterations, the bad one read (and taken back) before the checkpoint was written
  assert.deepEqual(n.runCheckpoint, { adamStep: 3, skippedSteps: 1, iteration: 4 });
}

/** `stop` names the first bad iteration after writing the lines before it. */
export function assertStop(c: ReadbackChecks): void {
  assert.match(
    c.stop.error,
    /^NonFiniteLossError: Training stopped at iteration 3: loss term "(loss|test-nan-at)" is NaN; the last good checkpoint is in /,
  );
  assert.deepEqual(c.stop.iterations, [1, 2]);
  assert.equal(c.stop.checkpointIteration, 2);
}

/** Readbacks: none while steps queue (after the first), one per flush, one per step in `step`. */
export function assertReads(c: ReadbackChecks): void {
  const r = c.reads;
  assert.equal(r.queued, 1, "5 queued steps: the first step's eager read only");
  assert.equal(r.flush, 1, "one readback for the queued steps");
  assert.equal(r.stepMode, 5, "readback: step reads each step once");
  assert.equal(r.runReads, r.runFlushPoints, "run(): one readback per logged iteration");
}
