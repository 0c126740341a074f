/**
 * Recording a WGSL program of our own into `@tensorflow/tfjs-backend-webgpu` 4.22.0's command
 * encoder, for kernels that tfjs's `runWebGPUProgram` cannot express: it binds one writable
 * output and read-only inputs, so a program can write one buffer; a program recorded here binds
 * whatever its pipeline declares (e.g. several buffers updated in place, `webgpu_adam.ts`).
 *
 * {@linkcode recordProgram} does what tfjs's `recordAndSubmit` does around a dispatch: the
 * uniforms through the backend's `makeUniforms` (released when the commands are submitted), every
 * bound tensor marked as owned by the command queue (tfjs defers releasing a tensor disposed
 * before the submission), the dispatch in the backend's compute pass, submission every
 * `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` dispatches, and under `tf.profile` a timestamp query and
 * the program's name in the profile, like tfjs's own programs.
 *
 * @module
 */
import { tf } from "../../deps.ts";

/** A GPU buffer, as far as this module uses one. */
export type GpuBuffer = object;

/** A compute pipeline, as far as this module uses one. */
export interface GpuPipeline {
  getBindGroupLayout(index: number): unknown;
}

interface GpuPass {
  setPipeline(p: GpuPipeline): void;
  setBindGroup(index: number, group: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}

/** The members of tfjs-backend-webgpu's `WebGPUBackend` (4.22.0) these kernels use. */
export interface WebgpuInternals {
  device: {
    limits?: { maxStorageBuffersPerShaderStage?: number };
    createShaderModule(d: { code: string; label?: string }): unknown;
    createComputePipeline(d: {
      layout: "auto";
      compute: { module: unknown; entryPoint: string };
      label?: string;
    }): GpuPipeline;
    createBindGroup(
      d: { layout: unknown; entries: { binding: number; resource: unknown }[] },
    ): unknown;
    createQuerySet(d: { type: string; count: number }): unknown;
    createBuffer(d: { size: number; usage: number; label?: string }): GpuBuffer;
  };
  tensorMap: { get(dataId: unknown): { resource?: unknown } | undefined };
  uploadToGPU(dataId: unknown): void;
  makeTensorInfo(shape: number[], dtype: string): tf.TensorInfo;
  refCount(dataId: unknown): number;
  incRef(dataId: unknown): void;
  makeUniforms(uniforms: { type: string; data: number[] }[]): unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  commandEncoder: {
    beginComputePass(d: Record<string, unknown>): GpuPass;
    copyBufferToBuffer(
      source: GpuBuffer,
      sourceOffset: number,
      target: GpuBuffer,
      targetOffset: number,
      size: number,
    ): void;
  } | null;
  computePassEncoder: GpuPass | null;
  commandQueueOwnedIds: WeakSet<object>;
  activeTimers: { name: string; query: Promise<number> }[] | null | undefined;
  supportTimestampQuery: boolean;
  querySet: unknown;
  querySetCount: number;
  dispatchCountInPass: number;
}

const METHODS = [
  "uploadToGPU",
  "makeTensorInfo",
  "refCount",
  "incRef",
  "makeUniforms",
  "ensureCommandEncoderReady",
  "endComputePassEncoder",
  "submitQueue",
  "getQueryTime",
] as const;

/**
 * What `backend` lacks of {@linkcode WebgpuInternals} (a member's name), or null where it has
 * everything (tfjs-backend-webgpu 4.22.0 does).
 */
export function webgpuInternalsMissing(backend: unknown): string | null {
  const b = backend as Partial<Record<string, unknown>> | undefined;
  if (b === undefined || b === null) return "backend";
  for (const m of METHODS) if (typeof b[m] !== "function") return `${m}()`;
  const device = b.device as Record<string, unknown> | undefined;
  if (typeof device?.createComputePipeline !== "function") return "device";
  if (!(b.commandQueueOwnedIds instanceof WeakSet)) return "commandQueueOwnedIds";
  if (typeof b.dispatchCountInPass !== "number") return "dispatchCountInPass";
  if (typeof (b.tensorMap as { get?: unknown } | undefined)?.get !== "function") return "tensorMap";
  return null;
}

const pipelines = new WeakMap<object, Map<string, GpuPipeline>>();

/**
 * The compute pipeline of the WGSL `code()` with entry point `entryPoint`, compiled once per
 * device and `key` (`code` runs only on the first call).
 */
export function cachedPipeline(
  b: WebgpuInternals,
  key: string,
  code: () => string,
  entryPoint: string,
): GpuPipeline {
  let byKey = pipelines.get(b.device);
  if (byKey === undefined) pipelines.set(b.device, byKey = new Map());
  let p = byKey.get(key);
  if (p === undefined) {
    const module = b.device.createShaderModule({ code: code(), label: key });
    p = b.device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint },
      label: key,
    });
    byKey.set(key, p);
  }
  return p;
}

/**
 * One program to record: its pipeline, uniforms (binding 0) and buffers (1, 2, ...: storage
 * buffers, or a uniform buffer where the shader declares the binding `var<uniform>`).
 */
export interface RecordedProgram {
  pipeline: GpuPipeline;
  /** Its name in tfjs's profile. */
  name: string;
  /** Scalars of the `Uniforms` struct, in order (tfjs's `makeUniforms` packing). */
  uniforms: { type: string; data: number[] }[];
  /** The storage buffers, bindings 1, 2, ... */
  buffers: GpuBuffer[];
  /** The data ids of the tensors they belong to (kept until the commands are submitted). */
  dataIds: unknown[];
  /** Workgroups in x and y. */
  dispatch: [number, number];
}

/** Record `p` into the backend's compute pass (see the module comment). */
export function recordProgram(b: WebgpuInternals, p: RecordedProgram): void {
  const entries = [
    { binding: 0, resource: b.makeUniforms(p.uniforms) },
    ...p.buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
  ];
  for (const id of p.dataIds) b.commandQueueOwnedIds.add(id as object);
  const bindGroup = b.device.createBindGroup({ layout: p.pipeline.getBindGroupLayout(0), entries });
  const timed = b.activeTimers != null;
  b.ensureCommandEncoderReady();
  if (timed && b.supportTimestampQuery) {
    b.endComputePassEncoder();
    b.querySet ??= b.device.createQuerySet({ type: "timestamp", count: b.querySetCount });
    b.computePassEncoder = b.commandEncoder!.beginComputePass({
      timestampWrites: {
        querySet: b.querySet,
        beginningOfPassWriteIndex: 0,
        endOfPassWriteIndex: 1,
      },
    });
  } else if (!b.computePassEncoder) {
    b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  }
  const pass = b.computePassEncoder!;
  pass.setPipeline(p.pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(p.dispatch[0], p.dispatch[1], 1);
  b.dispatchCountInPass++;
  const batch = tf.env().get("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE") as number;
  if (timed || batch <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (timed) b.activeTimers!.push({ name: p.name, query: b.getQueryTime() });
    else b.submitQueue();
  }
}
