/**
 * The fused Adam update for `@tensorflow/tfjs-backend-webgpu` 4.22.0: `MiSslAdamMany`
 * (`adam_many.ts`, all of a step's variables in one kernel call) and the per-variable `MiSslAdam`
 * (`adam.ts`) as its one-variable case.
 *
 * tfjs's programs bind one writable output and read-only inputs, so a program can write only one
 * of Adam's three results (the former version: three programs per variable). Here the kernel
 * records its own WGSL program into tfjs's command encoder, binding the weights and both moments
 * read-write and updating them in place: one program updates as many variables as the device's
 * `maxStorageBuffersPerShaderStage` allows four buffers each (`w, g, m, v`; tfjs asks for the
 * default, 8: two variables a program, 34 programs for the U-Net's 68 variables).
 *
 * In place is safe only where nothing else holds the data: a weight or moment whose data has
 * another reference (a tensor the variable was made from and that is still alive, two moments
 * made from one zeros tensor, the same data passed twice) is first copied into a new buffer
 * (`copyBufferToBuffer`, no program), and the result goes there. The outputs are the updated
 * data with one more reference each (as tfjs's `Reshape` returns its input's data), so
 * `variable.assign(output)` keeps the counts right. Every bound buffer is marked as owned by the
 * command queue, so tfjs defers releasing a gradient disposed right after the step until the
 * commands are submitted. Under `tf.profile` each program is timed and named like tfjs's own.
 *
 * With the gate input `ok` (a step's "every loss term is finite", computed on the device so that
 * the host need not read the loss back before the update), every program first reads it and
 * leaves weights and moments alone where it is 0. The flag is copied (4 bytes,
 * `copyBufferToBuffer`, no program) into a small uniform buffer of the kernel's own and bound as
 * a uniform, so it costs no storage-buffer slot: as many variables a program as without it.
 *
 * ```ts
 * import { registerWebgpuAdamKernel } from "./webgpu_adam.ts";
 * registerWebgpuAdamKernel(); // with kernels: custom, after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernels, warnFallback } from "../tfjs_internals.ts";
import { ADAM_KERNEL } from "./adam.ts";
import { ADAM_GATE_INPUT, ADAM_MANY_KERNEL, adamManySlots, type AdamSlot } from "./adam_many.ts";
import {
  cachedPipeline,
  type GpuBuffer,
  recordProgram,
  type WebgpuInternals,
  webgpuInternalsMissing,
} from "./webgpu_record.ts";

type TensorInfo = tf.TensorInfo;

const WORKGROUP = 128;
/** WebGPU's guaranteed `maxComputeWorkgroupsPerDimension`. */
const MAX_GROUPS = 65535;
/** Most variables one program updates (also bounded by the device's storage-buffer limit). */
const MAX_PER_PROGRAM = 8;
/** The name each program has in tfjs's profile. */
const PROGRAM_NAME = "AdamManyProgram";

/**
 * WGSL updating `k` variables in place: thread `t` of the flattened 2-D dispatch updates element
 * `t - start_j` of the last variable `j` whose threads start at or before `t`. The arithmetic of
 * `adam.ts` (L2 weight decay added to the gradient, bias corrections folded into `stepSize` and
 * `c2`), in float32.
 */
export function adamShader(k: number, workgroup: number, gated = false): string {
  const fields = Array.from({ length: k }, (_, j) => `n${j} : i32, start${j} : i32,`).join(" ");
  const bindings = Array.from({ length: k }, (_, j) =>
    [
      `@group(0) @binding(${4 * j + 1}) var<storage, read_write> w${j} : array<f32>;`,
      `@group(0) @binding(${4 * j + 2}) var<storage, read> g${j} : array<f32>;`,
      `@group(0) @binding(${4 * j + 3}) var<storage, read_write> m${j} : array<f32>;`,
      `@group(0) @binding(${4 * j + 4}) var<storage, read_write> v${j} : array<f32>;`,
    ].join("\n")).join("\n") +
    (gated ? `\n@group(0) @binding(${4 * k + 1}) var<uniform> gate : vec4<u32>;` : "");
  const update = (j: number) => `
    if (t >= u.start${j}) {
      let i = t - u.start${j};
      if (i < u.n${j}) {
        let wi = w${j}[i];
        var gi = g${j}[i];
        if (u.weightDecay > 0.0) {
          gi = gi + u.weightDecay * wi;
        }
        let mi = u.beta1 * m${j}[i] + u.oneMinusBeta1 * gi;
        let vi = u.beta2 * v${j}[i] + u.oneMinusBeta2 * gi * gi;
        m${j}[i] = mi;
        v${j}[i] = vi;
        w${j}[i] = wi - (mi / (sqrt(vi / u.c2) + u.epsilon)) * u.stepSize;
      }
      return;
    }`;
  return `
struct Uniforms {
  stepSize : f32, beta1 : f32, oneMinusBeta1 : f32, beta2 : f32, oneMinusBeta2 : f32,
  epsilon : f32, c2 : f32, weightDecay : f32, groupsX : i32, ${fields}
};
@group(0) @binding(0) var<uniform> u : Uniforms;
${bindings}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) li : u32) {
  let t = (i32(wg.y) * u.groupsX + i32(wg.x)) * ${workgroup} + i32(li);${
    gated ? "\n  if (gate.x == 0u) {\n    return;\n  }" : ""
  }
  ${Array.from({ length: k }, (_, j) => update(k - 1 - j)).join("")}
}
`;
}

const gateBuffers = new WeakMap<object, GpuBuffer>();

/**
 * The gate `ok` copied into the device's uniform buffer of the gated programs (one per device:
 * the commands run in order, so each step's copy lands after the former step's programs read it).
 */
function gateUniform(b: WebgpuInternals, ok: TensorInfo): GpuBuffer {
  if (ok.shape.reduce((a, d) => a * d, 1) !== 1) {
    throw new Error(`${ADAM_MANY_KERNEL}: the gate "ok" must have one element`);
  }
  let target = gateBuffers.get(b.device);
  if (target === undefined) {
    // GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST
    target = b.device.createBuffer({ size: 16, usage: 0x40 | 0x08, label: "AdamGate" });
    gateBuffers.set(b.device, target);
  }
  const source = gpuBuffer(b, ok);
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.commandEncoder!.copyBufferToBuffer(source, 0, target, 0, 4);
  b.commandQueueOwnedIds.add(ok.dataId);
  return target;
}

/** Variables per program on this device: four storage buffers each. */
export function variablesPerProgram(b: WebgpuInternals): number {
  const limit = b.device.limits?.maxStorageBuffersPerShaderStage ?? 8;
  return Math.max(1, Math.min(MAX_PER_PROGRAM, Math.floor(limit / 4)));
}

/** The GPU buffer of a float32 tensor (uploaded if its values are still on the CPU). */
function gpuBuffer(b: WebgpuInternals, t: TensorInfo): GpuBuffer {
  b.uploadToGPU(t.dataId);
  const resource = b.tensorMap.get(t.dataId)?.resource as GpuBuffer | null | undefined;
  if (resource == null || typeof (resource as { createView?: unknown }).createView === "function") {
    throw new Error(`${ADAM_MANY_KERNEL}: a tensor not in a GPU buffer (a texture?)`);
  }
  return resource;
}

/**
 * Where the updated values of `t` go: its own data (one more reference) where the kernel's
 * inputs use it once and no other tensor holds it, else a new copy of it.
 */
function writable(b: WebgpuInternals, t: TensorInfo, n: number, uses: Map<unknown, number>) {
  if (uses.get(t.dataId) === 1 && b.refCount(t.dataId) === 1) {
    b.incRef(t.dataId);
    return { dataId: t.dataId, shape: t.shape, dtype: "float32" } as TensorInfo;
  }
  const copy = b.makeTensorInfo(t.shape, "float32");
  const source = gpuBuffer(b, t);
  const target = gpuBuffer(b, copy);
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.commandEncoder!.copyBufferToBuffer(source, 0, target, 0, n * 4);
  b.commandQueueOwnedIds.add(t.dataId);
  b.commandQueueOwnedIds.add(copy.dataId);
  return copy;
}

/**
 * One Adam update of many float32 variables on webgpu (the interface of `MiSslAdamMany`,
 * `adam_many.ts`): `ceil(variables / variablesPerProgram)` programs, in place where safe.
 */
export function adamManyWebgpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo[] {
  const slots = adamManySlots(args.inputs);
  const ok = (args.inputs as Record<string, TensorInfo | undefined>)[ADAM_GATE_INPUT];
  const { stepSize, beta1, beta2, epsilon, c2, weightDecay } = args.attrs as Record<
    string,
    number
  >;
  const b = args.backend as unknown as WebgpuInternals;
  const uses = new Map<unknown, number>();
  for (const s of slots) {
    for (const t of [s.w, s.g, s.m, s.v]) uses.set(t.dataId, (uses.get(t.dataId) ?? 0) + 1);
  }
  const sizes = slots.map((s, i) => {
    const n = s.w.shape.reduce((a, d) => a * d, 1);
    for (const t of [s.g, s.m, s.v]) {
      if (t.shape.reduce((a, d) => a * d, 1) !== n) {
        throw new Error(`${ADAM_MANY_KERNEL}: variable ${i}: w, g, m, v differ in size`);
      }
    }
    if ([s.w, s.g, s.m, s.v].some((t) => t.dtype !== "float32")) {
      throw new Error(`${ADAM_MANY_KERNEL}: variable ${i}: float32 only`);
    }
    return n;
  });
  // (all checked before any reference is taken)
  const outputs: TensorInfo[] = [];
  const live: { n: number; slot: AdamSlot<TensorInfo> }[] = [];
  for (const [i, s] of slots.entries()) {
    const n = sizes[i];
    if (n === 0) {
      // plain infos: the engine would hand back a Tensor output as it is, without a reference
      for (const t of [s.w, s.m, s.v]) {
        b.incRef(t.dataId);
        outputs.push({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
      }
      continue;
    }
    const [w, m, v] = [s.w, s.m, s.v].map((t) => writable(b, t, n, uses));
    outputs.push(w, m, v);
    live.push({ n, slot: { w, g: s.g, m, v } });
  }
  const hyper = [stepSize, beta1, 1 - beta1, beta2, 1 - beta2, epsilon, c2, weightDecay].map(
    (x) => ({ type: "float32", data: [x] }),
  );
  const per = variablesPerProgram(b);
  const gate = ok !== undefined && live.length > 0 ? gateUniform(b, ok) : null;
  for (let first = 0; first < live.length; first += per) {
    const group = live.slice(first, first + per);
    // the threads of variable j are [starts[j], starts[j] + n_j), each run a whole workgroup
    const starts: number[] = [];
    let threads = 0;
    for (const { n } of group) {
      starts.push(threads);
      threads += Math.ceil(n / WORKGROUP) * WORKGROUP;
    }
    const groups = threads / WORKGROUP;
    const dispatch: [number, number] = groups <= MAX_GROUPS
      ? [groups, 1]
      : [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS)];
    const uniforms = [
      ...hyper,
      { type: "int32", data: [dispatch[0]] },
      ...group.flatMap(({ n }, j) => [
        { type: "int32", data: [n] },
        { type: "int32", data: [starts[j]] },
      ]),
    ];
    const tensors = group.flatMap(({ slot }) => [slot.w, slot.g, slot.m, slot.v]);
    recordProgram(b, {
      pipeline: cachedPipeline(
        b,
        `${PROGRAM_NAME}${group.length}${gate !== null ? "Gated" : ""}`,
        () => adamShader(group.length, WORKGROUP, gate !== null),
        "main",
      ),
      name: PROGRAM_NAME,
      uniforms,
      buffers: [...tensors.map((t) => gpuBuffer(b, t)), ...(gate !== null ? [gate] : [])],
      dataIds: tensors.map((t) => t.dataId),
      dispatch,
    });
  }
  return outputs;
}

/** `MiSslAdam` (one variable, `adam.ts`) on webgpu: `MiSslAdamMany`'s one-variable case. */
export function adamKernelWebgpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo[] {
  const { w, g, m, v } = args.inputs as Record<string, TensorInfo>;
  return adamManyWebgpu({ ...args, inputs: { w0: w, g0: g, m0: m, v0: v } });
}

/**
 * Register the fused Adam updates for webgpu, `MiSslAdamMany` and `MiSslAdam` (idempotent).
 * `initBackend` does with `kernels: custom`; without them `Adam` (core/optimizer.ts) composes
 * tfjs's kernels, as it does (saying so once) where the backend lacks what the kernels use.
 */
export function registerWebgpuAdamKernel(): void {
  const missing = webgpuInternalsMissing(tf.findBackend("webgpu"));
  if (missing !== null) {
    warnFallback(
      "webgpu-adam",
      `tfjs-backend-webgpu's ${missing}`,
      "Adam runs tfjs's element-wise kernels (about 13 GPU programs a variable)",
    );
    return;
  }
  addKernels("webgpu", { [ADAM_MANY_KERNEL]: adamManyWebgpu, [ADAM_KERNEL]: adamKernelWebgpu });
}
