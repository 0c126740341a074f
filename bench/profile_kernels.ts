/**
 * Per-kernel profile of the benchmark's training step: wraps every kernel registered for the
 * active backend with a timer and prints each kernel's share of the timed steps. A kernel that
 * runs other kernels (the training kernels) is charged its own time only; nested calls show as
 * `inner<outer`.
 *
 * ```sh
 * deno run --allow-read --allow-env --allow-sys bench/profile_kernels.ts [--size 128 ...]
 * ```
 *
 * Takes the benchmark's options (`--size`, `--labeled`, `--unlabeled`, `--base`, `--depth`,
 * `--steps`, `--warmup`, `--threads`, ...) plus `--clock cpu|wall` (default `cpu`: process CPU
 * time, which other processes on the machine disturb less), `--shapes 1` (per input shape) and
 * `--top N` (rows printed, default 40) and `--forward 1` (the inference forward of the labeled batch,
 * the benchmark's `forward_ms`, instead of the training step).
 *
 * @module
 */
import process from "node:process";
import { tf } from "../deps.ts";
import { benchOursKlStep } from "../app/bench.ts";
import { registerBatchNormRelu } from "../runtime/kernels/batch_norm_relu.ts";

const args = Object.fromEntries(
  Deno.args.join(" ").split("--").filter((s) => s.trim()).map((s) => {
    const [k, v] = s.trim().split(/\s+/);
    return [k, isNaN(Number(v)) ? v : Number(v)];
  }),
);

const stats = new Map<string, { ms: number; calls: number }>();
/** Process CPU time in ms (user + system): robust to other processes on a shared machine. */
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const clock = args.clock === "wall" ? () => performance.now() : cpuMs;
let wrapped = false;
let recording = false;
const stack: string[] = [];
const nested: number[] = [];

/** Wrap the kernels of `backend` once it is active. */
function wrap(backend: string): void {
  if (wrapped) return;
  wrapped = true;
  registerBatchNormRelu();
  for (const config of tf.getKernelsForBackend(backend)) {
    const inner = config.kernelFunc;
    tf.unregisterKernel(config.kernelName, backend);
    tf.registerKernel({
      ...config,
      kernelFunc: (a) => {
        if (!recording) return inner(a);
        // Exclusive time: a kernel that runs other kernels (the training kernels run Conv2D,
        // Transpose, ...) is charged only for its own work; nested calls are listed as
        // "name<parent".
        const shapes = args.shapes
          ? ` ${
            Object.values(a.inputs).filter((t) => t !== undefined).map((t) =>
              (t as tf.TensorInfo).shape.join("x")
            ).join(",")
          }`
          : "";
        const key =
          (stack.length ? `${config.kernelName}<${stack[stack.length - 1]}` : config.kernelName) +
          shapes;
        stack.push(config.kernelName);
        nested.push(0);
        const t = clock();
        const out = inner(a);
        const dt = clock() - t;
        stack.pop();
        const children = nested.pop()!;
        if (nested.length) nested[nested.length - 1] += dt;
        const s = stats.get(key) ?? { ms: 0, calls: 0 };
        s.ms += dt - children;
        s.calls++;
        stats.set(key, s);
        return out;
      },
    });
  }
}

// Start recording after the forward timing and the warm-up steps: hook Trainer.step through
// the engine's kernel dispatch by watching the step count.
const { Trainer } = await import("../core/trainer.ts");
const step = Trainer.prototype.step;
let calls = 0;
const warmup = (args.warmup as number | undefined) ?? 1;
let stepMs = 0;
// --forward 1: profile the benchmark's inference forward passes (its forward_ms) instead of the
// steps: the model's apply with `training: false`, wrapped on the first step.
let forwardMs = 0, forwardCalls = 0;
type Apply = (x: tf.Tensor4D, o?: { training?: boolean }) => tf.Tensor4D;
Trainer.prototype.step = async function (this: typeof Trainer.prototype) {
  wrap(tf.getBackend());
  calls++;
  const model = this.model as unknown as { apply: Apply; profiled?: boolean };
  if (args.forward && !model.profiled) {
    model.profiled = true;
    const apply = model.apply.bind(model);
    model.apply = (x, o) => {
      if (o?.training !== false) return apply(x, o);
      recording = true;
      const t = clock();
      try {
        return apply(x, o);
      } finally {
        forwardMs += clock() - t;
        forwardCalls++;
        recording = false;
      }
    };
  }
  if (args.forward) return await step.call(this);
  recording = calls > warmup;
  const t = clock();
  const out = await step.call(this);
  if (recording) stepMs += clock() - t;
  recording = false;
  return out;
};
const result = await benchOursKlStep({ ...args, steps: (args.steps as number) ?? 3 });
const steps = args.forward ? forwardCalls : result.step_ms.length;
if (args.forward) stepMs = forwardMs;
const rows = [...stats.entries()].sort((a, b) => b[1].ms - a[1].ms);
const total = rows.reduce((s, [, v]) => s + v.ms, 0);
console.log(JSON.stringify(result));
console.log(
  `${args.forward ? "forward" : "step"} ${(stepMs / steps).toFixed(0)} ms ${
    args.clock === "wall" ? "wall" : "CPU"
  } time (with profiling), kernels ${(total / steps).toFixed(0)} ms = ${
    (100 * total / stepMs).toFixed(1)
  }% of it`,
);
console.log("kernel                                      ms/step  share  calls/step");
for (const [name, v] of rows.slice(0, (args.top as number | undefined) ?? 40)) {
  console.log(
    `${name.padEnd(42)} ${(v.ms / steps).toFixed(1).padStart(8)} ${
      (100 * v.ms / stepMs).toFixed(1).padStart(5)
    }% ${(v.calls / steps).toFixed(0).padStart(6)}`,
  );
}
// Helper threads (--threads 2) would keep the process alive.
Deno.exit(0);
