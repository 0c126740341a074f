/**
 * The numbers `readback_test.ts` (on `wasm`, `trainer.readback: log` forced) and
 * `webgpu_readback_test.ts` (on `webgpu`, where `auto` is `log`) check: the tiny phantom run's
 * metrics under `step` and `log`; a step whose loss term is NaN (iteration 2, 0-based) gated on
 * the device against the same step skipped on the host; `stop` naming that iteration; the
 * readbacks a step makes; and the kernels a gated step adds.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { loadCheckpoint } from "../core/checkpoint.ts";
import { NonFiniteLossError, Trainer } from "../core/trainer.ts";
import { readbackCount } from "../core/step_readback.ts";
import { registerTestPlugins } from "./_test_plugins.ts";
import { tinyRecipe } from "./_tiny.ts";

const quiet = { progress: false, log: () => {} };

registerTestPlugins();

type Backend = "wasm" | "webgpu";

/** A difference that is not a number (JSON has no Infinity: it would print null). */
const BAD = Number.MAX_VALUE;

function recipe(
  backend: Backend,
  trainer: Record<string, unknown>,
  nan = false,
  more: Record<string, unknown>[] = [],
) {
  return tinyRecipe({
    backend,
    // (no warp in the gradient: on webgpu the warp's gradient adds atomically, in any order)
    ...(nan ? { regularizers: [{ type: "test-nan-at", at: 2 }, ...more] } : {}),
    trainer: { iterations: 6, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 6, ...trainer },
  });
}

/** What the checks found (JSON). */
export interface ReadbackChecks {
  /** The mode `auto` resolves to on this backend. */
  auto: string;
  /** metrics.jsonl under `step` and `log` (checkpoints every iteration in `log`: each flushes). */
  metrics: {
    keysEqual: boolean;
    iterationsStep: number[];
    iterationsLog: number[];
    maxDiff: number;
    /** Where the largest difference is. */
    worst: string;
    /** Lines in order: `[iteration, kind]`, kind `step` or `val`. */
    orderLog: [number, string][];
  };
  /** The same with no regularizer (partial supervision: no warp in the gradient). */
  metricsSupervised: ReadbackChecks["metrics"];
  /** NaN at iteration 2 under `skip`: 3 steps gated (log) against skipped on the host (step). */
  nan: {
    /** Largest difference of a checkpointed tensor (weights, moments, running statistics). */
    maxDiff: number;
    /** Largest difference of any tensor between the run after the NaN step and before it. */
    changedByBadStep: number;
    tensors: number;
    metaStep: { adamStep: number; skippedSteps: number };
    metaLog: { adamStep: number; skippedSteps: number };
    /** latest.ckpt of a `log` run checkpointing at iteration 4, NaN at 2, logEvery 10. */
    runCheckpoint: { adamStep: number; skippedSteps: number; iteration: number };
  };
  /** `stop` under `log` (checkpoints at 2, 4): the error, the lines written, the checkpoint. */
  stop: { error: string; iterations: number[]; checkpointIteration: number };
  /** data()/dataSync() calls: 5 queued steps, then the flush; and step mode's 5 steps. */
  reads: {
    queued: number;
    flush: number;
    stepMode: number;
    runReads: number;
    runFlushPoints: number;
  };
  /** Kernels of a gated (log) step that a step-mode step does not run, and vice versa. */
  kernels: { added: string[]; removed: string[]; logHasAdamMany: boolean };
}

async function metricsOf(dir: string): Promise<Record<string, number>[]> {
  const text = await Deno.readTextFile(`${dir}/metrics.jsonl`);
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

async function runMetrics(backend: Backend, dir: string, regularizers?: unknown[]) {
  const lines: Record<string, Record<string, number>[]> = {};
  for (const readback of ["step", "log"]) {
    const extra = readback === "log" ? { checkpointEvery: 4, logEvery: 5 } : { logEvery: 5 };
    const r = recipe(backend, { readback, ...extra });
    if (regularizers) r.regularizers = regularizers as typeof r.regularizers;
    const t = await Trainer.create(r, { ...quiet, out: `${dir}/${readback}` });
    try {
      await t.run();
    } finally {
      t.dispose();
    }
    lines[readback] = await metricsOf(`${dir}/${readback}`);
    await Deno.remove(`${dir}/${readback}`, { recursive: true });
  }
  const steps = (ls: Record<string, number>[]) => ls.filter((l) => "loss" in l);
  const [a, b] = [steps(lines.step), steps(lines.log)];
  let maxDiff = 0;
  let worst = "";
  let keysEqual = a.length === b.length;
  a.forEach((l, i) => {
    const keys = Object.keys(l);
    keysEqual &&= JSON.stringify(keys) === JSON.stringify(Object.keys(b[i] ?? {}));
    for (const k of keys) {
      if (k.startsWith("seconds_")) continue;
      const d = Math.abs(l[k] - (b[i]?.[k] ?? NaN)) || (l[k] === b[i]?.[k] ? 0 : BAD);
      if (d > maxDiff) worst = `${k} at ${l.iteration}: ${l[k]} vs ${b[i]?.[k]}`;
      maxDiff = Math.max(maxDiff, d);
    }
  });
  return {
    keysEqual,
    iterationsStep: a.map((l) => l.iteration),
    iterationsLog: b.map((l) => l.iteration),
    maxDiff,
    worst,
    orderLog: lines.log.map((l) => [l.iteration, "loss" in l ? "step" : "val"] as [number, string]),
  };
}

async function savedAfter(backend: Backend, readback: string, steps: number, dir: string) {
  const t = await Trainer.create(recipe(backend, { readback, nonFinite: "skip" }, true), {
    ...quiet,
    out: dir,
  });
  try {
    for (let i = 0; i < steps; i++) await t.queueStep();
    await t.saveCheckpoint("latest.ckpt"); // reads the queued steps first
    return await loadCheckpoint<{ adamStep: number; skippedSteps: number }>(
      `${dir}/latest.ckpt`,
    );
  } finally {
    t.dispose();
  }
}

async function nanChecks(backend: Backend, dir: string) {
  const eager = await savedAfter(backend, "step", 3, `${dir}/eager`);
  const gated = await savedAfter(backend, "log", 3, `${dir}/gated`);
  const before = await savedAfter(backend, "log", 2, `${dir}/before`);
  let maxDiff = 0;
  let changedByBadStep = 0;
  for (const [name, t] of eager.tensors) {
    const g = gated.tensors.get(name)!.data;
    const b = before.tensors.get(name)!.data;
    t.data.forEach((v, i) => {
      maxDiff = Math.max(maxDiff, Number.isFinite(g[i]) ? Math.abs(v - g[i]) : BAD);
      const change = Math.abs(g[i] - b[i]);
      changedByBadStep = Math.max(changedByBadStep, Number.isFinite(change) ? change : BAD);
    });
  }
  // a run that checkpoints at iteration 4 (the bad step 2 not read before: logEvery 10); the
  // checkpoint is copied at the end of the next step, before the final one replaces it
  const r = recipe(
    backend,
    {
      readback: "log",
      nonFinite: "skip",
      logEvery: 10,
      checkpointEvery: 4,
    },
    true,
    [{
      type: "test-copy-checkpoint",
      at: 4,
      from: `${dir}/run/latest.ckpt`,
      to: `${dir}/at4.ckpt`,
    }],
  );
  const t = await Trainer.create(r, { ...quiet, out: `${dir}/run` });
  let runCheckpoint;
  try {
    await t.run();
    const c = await loadCheckpoint<{ adamStep: number; skippedSteps: number; iteration: number }>(
      `${dir}/at4.ckpt`,
    );
    runCheckpoint = {
      adamStep: c.meta.adamStep,
      skippedSteps: c.meta.skippedSteps,
      iteration: c.meta.iteration,
    };
  } finally {
    t.dispose();
  }
  return {
    maxDiff,
    changedByBadStep,
    tensors: eager.tensors.size,
    metaStep: { adamStep: eager.meta.adamStep, skippedSteps: eager.meta.skippedSteps },
    metaLog: { adamStep: gated.meta.adamStep, skippedSteps: gated.meta.skippedSteps },
    runCheckpoint,
  };
}

async function stopChecks(backend: Backend, dir: string) {
  // checkpoints at 2 (its read writes lines 1, 2) and 4 (its read finds iteration 3 bad)
  const stop = { readback: "log", logEvery: 10, checkpointEvery: 2 };
  const t = await Trainer.create(recipe(backend, stop, true), {
    ...quiet,
    out: `${dir}/stop`,
  });
  let error = "";
  try {
    await t.run();
  } catch (e) {
    error = `${e instanceof NonFiniteLossError ? "NonFiniteLossError" : "other"}: ${
      (e as Error).message
    }`;
  } finally {
    t.dispose();
  }
  let iterations: number[] = [];
  try {
    iterations = (await metricsOf(`${dir}/stop`)).map((l) => l.iteration);
  } catch {
    iterations = [-1]; // the folder was removed (no checkpoint)
  }
  const ckpt = await loadCheckpoint<{ iteration: number }>(`${dir}/stop/latest.ckpt`);
  return { error, iterations, checkpointIteration: ckpt.meta.iteration };
}

/** Count data()/dataSync() calls while `f` runs. */
async function countReads(f: () => Promise<unknown>): Promise<number> {
  const proto = tf.Tensor.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const [data, dataSync] = [proto.data, proto.dataSync];
  let n = 0;
  proto.data = function (this: unknown, ...a: unknown[]) {
    n++;
    return data.apply(this, a);
  };
  proto.dataSync = function (this: unknown, ...a: unknown[]) {
    n++;
    return dataSync.apply(this, a);
  };
  try {
    await f();
  } finally {
    proto.data = data;
    proto.dataSync = dataSync;
  }
  return n;
}

async function readChecks(backend: Backend) {
  const log = await Trainer.create(recipe(backend, { readback: "log" }), { ...quiet, out: null });
  const step = await Trainer.create(recipe(backend, { readback: "step" }), { ...quiet, out: null });
  try {
    const queued = await countReads(async () => {
      for (let i = 0; i < 5; i++) await log.queueStep();
    });
    const flush = await countReads(() => log.flushSteps());
    const stepMode = await countReads(async () => {
      for (let i = 0; i < 5; i++) await step.queueStep();
    });
    return { queued, flush, stepMode };
  } finally {
    log.dispose();
    step.dispose();
  }
}

async function runReads(backend: Backend) {
  const t = await Trainer.create(
    recipe(backend, { readback: "log", logEvery: 2, iterations: 7, validateEvery: 7 }),
    { ...quiet, out: null },
  );
  try {
    const before = readbackCount.reads;
    await t.run();
    // the first step's own, then logged iterations 2, 4, 6 and the last one, 7 (validation)
    return { runReads: readbackCount.reads - before, runFlushPoints: 5 };
  } finally {
    t.dispose();
  }
}

async function kernelChecks(backend: Backend) {
  const names: Record<string, string[]> = {};
  for (const readback of ["step", "log"]) {
    const t = await Trainer.create(recipe(backend, { readback }), { ...quiet, out: null });
    try {
      await t.queueStep();
      const p = await tf.profile(() => t.queueStep());
      names[readback] = p.kernels.map((k) => k.name);
      await t.flushSteps();
    } finally {
      t.dispose();
    }
  }
  const count = (a: string[]) => {
    const m = new Map<string, number>();
    for (const k of a) m.set(k, (m.get(k) ?? 0) + 1);
    return m;
  };
  const [s, l] = [count(names.step), count(names.log)];
  const diff = (a: Map<string, number>, b: Map<string, number>) =>
    [...a].filter(([k, n]) => n > (b.get(k) ?? 0)).map(([k, n]) => `${k}x${n - (b.get(k) ?? 0)}`);
  return { added: diff(l, s), removed: diff(s, l), logHasAdamMany: l.has("MiSslAdamMany") };
}

/** Every check on `backend`, in a temporary folder. */
export async function readbackChecks(backend: Backend): Promise<ReadbackChecks> {
  const dir = await Deno.makeTempDir({ prefix: "missl-readback-" });
  try {
    const probe = await Trainer.create(recipe(backend, {}), { ...quiet, out: null });
    const auto = probe.readback;
    probe.dispose();
    return {
      auto,
      metrics: await runMetrics(backend, dir),
      metricsSupervised: await runMetrics(backend, dir, []),
      nan: await nanChecks(backend, dir),
      stop: await stopChecks(backend, dir),
      reads: { ...(await readChecks(backend)), ...(await runReads(backend)) },
      kernels: await kernelChecks(backend),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
