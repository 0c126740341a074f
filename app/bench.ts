/**
 * The training-step benchmark (`deno task bench`): times one full Ours (KL) training step, the
 * same work as the PyTorch peer `ours_kl_step_torch.py`, through the project's own
 * {@linkcode Trainer} (U-Net, affine transform, MI + KL regularizers, Adam), so it measures the
 * real training code path.
 *
 * The data are an in-memory dataset of random images and labels (`bench-random`): a labeled
 * batch plus the unlabeled batch seen twice (x and T(x)) go through the network once; the loss
 * is cross-entropy + lambda (MI + KL); Adam updates every weight.
 *
 * ```sh
 * deno task bench --size 128 --labeled 4 --unlabeled 4 --base 16 --depth 5 --steps 5
 * ```
 *
 * @module
 */
import { type Command, tf, tfWasm, z } from "../deps.ts";
import { datasets, type SegmentationDataset } from "../core/dataset.ts";
import { parseRecipe } from "../core/recipe.ts";
import { Rng } from "../core/rng.ts";
import { Trainer } from "../core/trainer.ts";
import { readbackCount } from "../core/step_readback.ts";
import { type BackendName, BACKENDS } from "../runtime/backend.ts";
import { describeAdapter, webgpuAdapter } from "../runtime/webgpu.ts";
import { kernelThreads } from "../runtime/kernels/wasm_conv.ts";
import { UserError } from "../core/errors.ts";
import { registerBuiltins } from "../plugins/mod.ts";

/** Options of {@linkcode benchOursKlStep} (the peer's flags, plus the backend). */
export interface BenchOptions {
  /** Image side. @default {128} */
  size?: number;
  /** Labeled batch. @default {4} */
  labeled?: number;
  /** Unlabeled batch (seen twice: x and T(x)). @default {4} */
  unlabeled?: number;
  /** U-Net width of the first level. @default {16} */
  base?: number;
  /** U-Net levels. @default {5} */
  depth?: number;
  /** Classes. @default {4} */
  classes?: number;
  /** Timed steps (the median is reported). @default {5} */
  steps?: number;
  /** Untimed warm-up steps. @default {1} */
  warmup?: number;
  /** Backend. @default {"wasm"} */
  backend?: BackendName;
  /**
   * This project's kernels (`custom`) or tfjs's own (`builtin`), as a recipe's `kernels`.
   * @default {"custom"}
   */
  kernels?: "custom" | "builtin";
  /** wasm threads (used where the threaded build runs). @default {1} */
  threads?: number;
  /** Weight of MI + KL. @default {0.1} */
  lam?: number;
  /** Batch-norm statistics: the trainer's default `per-group`, or the peer's `joint`. */
  bnStatistics?: "per-group" | "joint";
  /** The trainer's `readback` (`auto`: `log` on webgpu with custom kernels). @default {"auto"} */
  readback?: "auto" | "step" | "log";
  /** Seed of the weights and of the random data. @default {0} */
  seed?: number;
  /** Profile one more step per kernel (`profile` in the result). @default {false} */
  profile?: boolean;
  /** Print each step's time on standard error as it ends. @default {false} */
  progress?: boolean;
}

/** What {@linkcode benchOursKlStep} measures (one JSON line on the command line). */
export interface BenchResult {
  impl: string;
  backend: string;
  threads: number;
  params: number;
  size: number;
  labeled: number;
  unlabeled: number;
  base: number;
  depth: number;
  /** Forward pass of the labeled batch in inference mode, ms (median of 3, after warm-up). */
  forward_ms: number;
  /**
   * Median of the timed training steps' host times (`step_ms`), ms. With `readback: step` each
   * includes the GPU's work (the step reads its loss back); with `log` (webgpu) it does not:
   * compare `step_ms_mean` there.
   */
  step_ms_median: number;
  /** Every timed step's host time, ms (with `readback: log`: encoding, not the GPU's work). */
  step_ms: number[];
  /**
   * The timed steps' wall time, the GPU's work included, per step, ms: the steps run as a
   * training run runs them (`trainer.readback`) and the host then waits once for the last
   * queued loss terms (one readback), so the GPU's work of every timed step is in the sum.
   */
  step_ms_mean: number;
  /** The trainer's `readback` mode (`step` or `log`, resolved from `auto`). */
  readback: "step" | "log";
  /** Loss readbacks (host waits for the GPU) per timed step, the final one included. */
  readbacks_per_step: number;
  /** Peak resident set size of the process, MiB. */
  peak_rss_mb: number;
  /** Live tensors after the timed steps (model, optimizer state: constant in `steps`). */
  tensors_after: number;
  /** The WebGPU adapter (backend `webgpu`). */
  adapter?: string;
  /** `custom` (this project's kernels) or `builtin` (tfjs's own). */
  kernels: "custom" | "builtin";
  /**
   * `--profile`: one more step under `tf.profile`: its wall time, the kernels' total (GPU time
   * from timestamp queries on webgpu, where the device has them; on a GPU, wall minus kernels is
   * the dispatch overhead on the CPU), the host time spent inside the kernel functions
   * (recording and dispatching), the kernel calls (`dispatches`) and, on webgpu, the GPU
   * programs they ran (`gpu_dispatches`: a Reshape runs none, a convolution may run several);
   * then the 15 largest kernels by time, by calls and by host time.
   */
  profile?: {
    wall_ms: number;
    kernels_ms: number;
    host_ms: number;
    dispatches: number;
    gpu_dispatches?: number;
    top: KernelProfileRow[];
    top_by_calls: KernelProfileRow[];
    top_by_host: KernelProfileRow[];
  };
}

/** One kernel's share of a profiled step (see {@linkcode BenchResult.profile}). */
export interface KernelProfileRow {
  kernel: string;
  /** Kernel time, ms (GPU time on webgpu where timestamps exist). */
  ms: number;
  /** Host time inside the kernel function, ms. */
  host_ms: number;
  /** Calls of the kernel. */
  calls: number;
  /** GPU programs the calls ran (webgpu only). */
  programs?: number;
}

const randomOptions = z.object({
  size: z.number().int().min(1),
  labeled: z.number().int().min(1),
  unlabeled: z.number().int().min(1),
  classes: z.number().int().min(2),
  seed: z.number().int(),
}).strict();

/** A dataset of uniform random images and labels, held in memory. */
const randomDataset = {
  id: "bench-random",
  description: "Uniform random images and labels in memory (benchmarks)",
  options: randomOptions,
  load: (o: z.infer<typeof randomOptions>): Promise<SegmentationDataset> => {
    const rng = new Rng(o.seed + 1);
    const hw = o.size * o.size;
    const images = (n: number) => Float32Array.from({ length: n * hw }, () => rng.next());
    const labels = (n: number) => Uint8Array.from({ length: n * hw }, () => rng.int(o.classes));
    const set = (n: number, withLabels: boolean, prefix: string) => ({
      count: n,
      height: o.size,
      width: o.size,
      images: images(n),
      labels: withLabels ? labels(n) : null,
      patients: Array.from({ length: n }, (_, i) => `${prefix}${i}`),
    });
    return Promise.resolve({
      id: "bench-random",
      classNames: Array.from({ length: o.classes }, (_, i) => `c${i}`),
      labeled: set(o.labeled, true, "l"),
      unlabeled: set(o.unlabeled, false, "u"),
      validation: [{
        id: "v0",
        patient: "v0",
        shape: [1, o.size, o.size],
        image: images(1),
        label: labels(1),
      }],
      splits: { labeled: ["l"], unlabeled: ["u"], validation: ["v0"] },
    });
  },
};

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Peak resident set size in MiB (VmHWM where /proc is readable, else the current RSS). */
function peakRssMb(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const m = status.match(/^VmHWM:\s+(\d+)\s+kB/m);
    if (m) return Number(m[1]) / 1024;
  } catch {
    // no /proc: fall back to the current RSS
  }
  return Deno.memoryUsage().rss / 2 ** 20;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * Build a {@linkcode Trainer} for Ours (KL) on random data and time its training step after
 * `warmup` untimed steps, plus an inference forward pass of the labeled batch.
 */
export async function benchOursKlStep(options: BenchOptions = {}): Promise<BenchResult> {
  const o = {
    size: 128,
    labeled: 4,
    unlabeled: 4,
    base: 16,
    depth: 5,
    classes: 4,
    steps: 5,
    warmup: 1,
    backend: "wasm" as BackendName,
    kernels: "custom" as "custom" | "builtin",
    threads: 1,
    lam: 0.1,
    bnStatistics: "per-group" as const,
    readback: "auto" as "auto" | "step" | "log",
    seed: 0,
    profile: false,
    progress: false,
    ...options,
  };
  registerBuiltins();
  datasets.register(randomDataset, { override: true });
  const recipe = parseRecipe({
    method: "ours-kl",
    seed: o.seed,
    backend: o.backend,
    kernels: o.kernels,
    threads: o.threads,
    dataset: {
      type: "bench-random",
      size: o.size,
      labeled: o.labeled,
      unlabeled: o.unlabeled,
      classes: o.classes,
      seed: o.seed,
    },
    model: { type: "unet", base: o.base, depth: o.depth },
    // The peer's T: rotation 20 degrees, shear 10 degrees, scale [0.9, 1.1], bilinear.
    transform: { type: "affine", rotation: 20, shear: 10, scale: [0.9, 1.1] },
    augmentation: { rotation: 0, flip: false },
    lambda: o.lam,
    regularizers: [{ type: "mi", weight: 1, radius: 1 }, { type: "kl", weight: 1 }],
    trainer: {
      iterations: o.warmup + o.steps + 1,
      labeledBatch: o.labeled,
      unlabeledBatch: o.unlabeled,
      batchNormStatistics: o.bnStatistics,
      readback: o.readback,
    },
    optimizer: { lr: 1e-3 },
  }, "<bench>");
  const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
  try {
    const say = (line: string) => {
      if (o.progress) console.error(`bench: ${line}`);
    };
    for (let i = 0; i < o.warmup; i++) {
      const t = performance.now();
      await trainer.step();
      say(`warm-up step ${i + 1}: ${round1(performance.now() - t)} ms`);
    }
    // Forward of the labeled batch in inference mode, as the peer times it (after one call; here
    // also after the warm-up steps, so that V8 has compiled the kernels with its optimising tier).
    const xl = tf.tidy(() => tf.randomUniform([o.labeled, o.size, o.size, 1], 0, 1, "float32", 7));
    const forward = async () => {
      const t = performance.now();
      const y = trainer.model.apply(xl as tf.Tensor4D, { training: false });
      await y.data();
      y.dispose();
      return performance.now() - t;
    };
    await forward();
    const forwardMs = median([await forward(), await forward(), await forward()]);
    xl.dispose();
    const times: number[] = [];
    const reads0 = readbackCount.reads;
    const t0 = performance.now();
    for (let i = 0; i < o.steps; i++) {
      const t = performance.now();
      // as run() does: with readback: step the terms are read each step, with log once
      await trainer.queueStep();
      if (trainer.readback === "step") await trainer.flushSteps();
      times.push(performance.now() - t);
      say(`step ${i + 1}: ${round1(times[i])} ms`);
    }
    await trainer.flushSteps(); // waits for the GPU's work of every timed step
    const meanMs = (performance.now() - t0) / o.steps;
    const readbacks = (readbackCount.reads - reads0) / o.steps;
    const tensorsAfter = tf.memory().numTensors;
    const profile = o.profile ? await profileStep(() => trainer.step()) : undefined;
    const adapter = trainer.backend === "webgpu" ? webgpuAdapter() : null;
    return {
      impl: `tfjs-${tf.version_core}`,
      backend: trainer.backend,
      kernels: o.kernels,
      threads: effectiveThreads(trainer.backend),
      params: trainer.model.paramCount,
      size: o.size,
      labeled: o.labeled,
      unlabeled: o.unlabeled,
      base: o.base,
      depth: o.depth,
      forward_ms: round1(forwardMs),
      step_ms_median: round1(median(times)),
      step_ms: times.map(round1),
      step_ms_mean: round1(meanMs),
      readback: trainer.readback,
      readbacks_per_step: Math.round(readbacks * 100) / 100,
      peak_rss_mb: round1(peakRssMb()),
      tensors_after: tensorsAfter,
      ...(adapter ? { adapter: describeAdapter(adapter) } : {}),
      ...(profile ? { profile } : {}),
    };
  } finally {
    trainer.dispose();
  }
}

/** The part of tfjs's engine profiler that {@linkcode profileStep} wraps to time the host side. */
interface ProfilerLike {
  profileKernel(name: string, inputs: unknown, f: () => unknown): unknown;
}

/**
 * One call of `step` under `tf.profile`: wall time, kernel time, host time, calls and (webgpu)
 * GPU programs, and the 15 largest kernels by time, by calls and by host time.
 */
async function profileStep(
  step: () => Promise<unknown>,
): Promise<NonNullable<BenchResult["profile"]>> {
  const host = new Map<string, number>();
  const profiler = (tf.engine() as unknown as { profiler?: ProfilerLike }).profiler;
  const original = profiler?.profileKernel;
  if (profiler && original) {
    // the host side of each kernel call: tfjs's profiler times the GPU (or the call) only
    profiler.profileKernel = function (name, inputs, f) {
      return original.call(this, name, inputs, () => {
        const t = performance.now();
        try {
          return f();
        } finally {
          host.set(name, (host.get(name) ?? 0) + performance.now() - t);
        }
      });
    };
  }
  const t = performance.now();
  let info: Awaited<ReturnType<typeof tf.profile>>;
  try {
    info = await tf.profile(async () => {
      await step();
    });
  } finally {
    if (profiler && original) profiler.profileKernel = original;
  }
  const wall = performance.now() - t;
  const webgpu = tf.getBackend() === "webgpu";
  const byKernel = new Map<string, { ms: number; calls: number; programs: number }>();
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    const s = byKernel.get(k.name) ?? { ms: 0, calls: 0, programs: 0 };
    s.ms += ms;
    s.calls++;
    s.programs += webgpuPrograms(k.extraInfo);
    byKernel.set(k.name, s);
  }
  const rows: KernelProfileRow[] = [...byKernel.entries()].map(([kernel, s]) => ({
    kernel,
    ms: round1(s.ms),
    host_ms: round1(host.get(kernel) ?? 0),
    calls: s.calls,
    ...(webgpu ? { programs: s.programs } : {}),
  }));
  const top = (key: (r: KernelProfileRow) => number) =>
    [...rows].sort((a, b) => key(b) - key(a)).slice(0, 15);
  return {
    wall_ms: round1(wall),
    kernels_ms: round1(rows.reduce((s, r) => s + r.ms, 0)),
    host_ms: round1([...host.values()].reduce((a, b) => a + b, 0)),
    dispatches: info.kernels.length,
    ...(webgpu ? { gpu_dispatches: rows.reduce((s, r) => s + (r.programs ?? 0), 0) } : {}),
    top: top((r) => r.ms),
    top_by_calls: top((r) => r.calls),
    top_by_host: top((r) => r.host_ms),
  };
}

/**
 * GPU programs one profiled webgpu kernel call ran: tfjs-backend-webgpu's profile names each
 * (`"Program: ms, Program: ms"`); other backends leave it empty.
 */
function webgpuPrograms(extraInfo: unknown): number {
  if (typeof extraInfo !== "string" || extraInfo.trim() === "") return 0;
  return extraInfo.split(", ").length;
}

/**
 * Threads the backend really computes with (1 unless the wasm threaded build is running): the
 * kernel pool's or XNNPACK's, whichever is larger.
 */
function effectiveThreads(backend: string): number {
  if (backend !== "wasm") return 1;
  try {
    return Math.max(tfWasm.getThreadsCount(), kernelThreads(tf.backend() as never));
  } catch {
    return 1;
  }
}

function positiveInt(name: string, min = 1): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new UserError(`bench: --${name} must be an integer >= ${min}, got "${value}"`);
    }
    return n;
  };
}

/** Add the `bench` command to the CLI program. */
export function addBenchCommand(program: Command): void {
  program.command("bench")
    .description(
      "Time one Ours (KL) training step (the PyTorch peer's work) and print one JSON line",
    )
    .option("--size <n>", "image side", positiveInt("size"), 128)
    .option("--labeled <n>", "labeled batch", positiveInt("labeled"), 4)
    .option(
      "--unlabeled <n>",
      "unlabeled batch (seen twice: x and T(x))",
      positiveInt("unlabeled"),
      4,
    )
    .option("--base <n>", "U-Net width of the first level", positiveInt("base"), 16)
    .option("--depth <n>", "U-Net levels", positiveInt("depth"), 5)
    .option("--classes <n>", "classes", positiveInt("classes", 2), 4)
    .option(
      "--steps <n>",
      "timed steps (median of the host times and the mean with the GPU's work reported)",
      positiveInt("steps"),
      5,
    )
    .option("--warmup <n>", "untimed warm-up steps", positiveInt("warmup", 0), 1)
    .option("--backend <name>", `backend: ${BACKENDS.join(" | ")}`, "wasm")
    .option("--kernels <mode>", "custom (this project's kernels) | builtin (tfjs's own)", "custom")
    .option("--threads <n>", "wasm threads", positiveInt("threads"), 1)
    .option("--lam <x>", "weight of MI + KL", parseFloat, 0.1)
    .option("--bn-statistics <mode>", "per-group (the trainer's default) | joint (the peer's)")
    .option("--readback <mode>", "auto | step | log: when the loss is read (trainer.readback)")
    .option("--profile", "time one more step per kernel (GPU time on webgpu)")
    .option("--progress", "print each step's time on standard error")
    .action(async (
      opts: BenchOptions & {
        bnStatistics?: string;
        backend: string;
        kernels: string;
        readback?: string;
      },
    ) => {
      if (!BACKENDS.includes(opts.backend as BackendName)) {
        throw new UserError(
          `Unknown backend "${opts.backend}"; known backends: ${BACKENDS.join(", ")}`,
        );
      }
      const bn = opts.bnStatistics ?? "per-group";
      if (bn !== "per-group" && bn !== "joint") {
        throw new UserError(`bench: --bn-statistics must be per-group or joint, got "${bn}"`);
      }
      if (opts.kernels !== "custom" && opts.kernels !== "builtin") {
        throw new UserError(`bench: --kernels must be custom or builtin, got "${opts.kernels}"`);
      }
      const readback = opts.readback ?? "auto";
      if (readback !== "auto" && readback !== "step" && readback !== "log") {
        throw new UserError(`bench: --readback must be auto, step or log, got "${readback}"`);
      }
      const result = await benchOursKlStep({
        ...opts,
        readback,
        backend: opts.backend as BackendName,
        kernels: opts.kernels,
        bnStatistics: bn,
      });
      console.log(JSON.stringify(result));
    });
}
