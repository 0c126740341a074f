/**
 * The `webgpu` backend: `@tensorflow/tfjs-backend-webgpu` on Deno's built-in WebGPU
 * (`navigator.gpu`, which Deno exposes with `--unstable-webgpu`). It runs on whatever the system's
 * WebGPU implementation (wgpu) finds: Vulkan on Linux, Metal on macOS, D3D12 on Windows, and
 * Mesa's software Vulkan ("lavapipe") where there is no GPU, which is how CI tests it.
 *
 * The package is imported here only when the backend is chosen, through a computed specifier, so
 * it is neither in `deno.lock` nor fetched on the default (`wasm`) path.
 *
 * What this module adds to the package:
 * - {@linkcode probeAdapter} / {@linkcode describeAdapter}: which adapter, whether it is a
 *   software (CPU) one, and its buffer limits, for the run's first lines and for `auto`.
 * - Limits: a tensor larger than the device's `maxStorageBufferBindingSize` (or `maxBufferSize`)
 *   makes WebGPU drop the kernel with only a console message and tfjs read zeros: here it ends
 *   in a {@linkcode UserError} that names the limit and the recipe fields to lower, before any
 *   wrong number is computed.
 * - Errors the device reports later (out of memory, a lost device) make the next read of a
 *   tensor fail with a UserError instead of returning garbage.
 *
 * Both reach into the backend object tfjs-backend-webgpu 4.22.0 creates (`device`,
 * `bufferManager.acquireBuffer`, `read`); each is checked, and where it is missing the backend
 * runs without that guard (with a one-time warning).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { UserError } from "../errors.ts";
import { warnFallback } from "./tfjs_internals.ts";

/** The npm package of the backend (with its version, as the other tfjs packages). */
export const WEBGPU_PACKAGE = "@tensorflow/tfjs-backend-webgpu@4.22.0";

/** Recipe fields that set the size of a step's largest tensors, for error messages. */
export const SIZE_FIELDS =
  "trainer.labeledBatch, trainer.unlabeledBatch, dataset.size or model.base";

/** What a run says about its WebGPU adapter. */
export interface AdapterDescription {
  /** The driver's name of the device (`NVIDIA H100 80GB HBM3`, `llvmpipe (LLVM 15.0.6, 256 bits)`). */
  description: string;
  /** Vendor, by name where its PCI id is known (`NVIDIA`, `Mesa`), else as reported. */
  vendor: string;
  /** Architecture, where the implementation reports one (often empty on Vulkan). */
  architecture: string;
  /** A fallback / CPU implementation (lavapipe, SwiftShader, WARP) rather than a GPU. */
  software: boolean;
  /** Largest buffer a kernel may bind as storage, bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer, bytes. */
  maxBufferSize: number;
}

interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

interface AdapterLike {
  info?: AdapterInfoLike;
  isFallbackAdapter?: boolean;
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}

interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<AdapterLike | null>;
}

/** PCI vendor ids as wgpu reports them (a decimal string under Deno). */
const VENDORS: Record<number, string> = {
  0x10de: "NVIDIA",
  0x1002: "AMD",
  0x1022: "AMD",
  0x8086: "Intel",
  0x106b: "Apple",
  0x13b5: "ARM",
  0x5143: "Qualcomm",
  0x1414: "Microsoft",
  0x1af4: "virtio",
  0x10005: "Mesa",
};

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|softpipe|software|basic render/i;

function gpu(): GpuLike | undefined {
  const g = (globalThis.navigator as unknown as { gpu?: GpuLike } | undefined)?.gpu;
  if (g !== undefined) quietWayland();
  return g;
}

/**
 * Where `XDG_RUNTIME_DIR` is unset, set it to the temporary folder before the first adapter
 * request: Mesa's Vulkan drivers (through libwayland) print "error: XDG_RUNTIME_DIR is invalid or
 * not set in the environment." twice on every request without it, although the adapter is found
 * either way, which made a good run look broken (library use, `plot`, the tests). Only where the
 * process may set the variable (`--allow-env`); never prompts.
 */
function quietWayland(env: Pick<typeof Deno.env, "get" | "set"> = Deno.env): void {
  try {
    const state = Deno.permissions.querySync({ name: "env", variable: "XDG_RUNTIME_DIR" }).state;
    if (state !== "granted" || env.get("XDG_RUNTIME_DIR")) return;
    let tmp: string | undefined;
    try {
      tmp = env.get("TMPDIR");
    } catch {
      tmp = undefined;
    }
    // libwayland only checks that it is an absolute path (no Wayland socket there: no display)
    env.set("XDG_RUNTIME_DIR", tmp?.startsWith("/") ? tmp : "/tmp");
  } catch {
    // no Deno.permissions (another runtime) or the variable cannot be set: leave it
  }
}

/** Whether this process has WebGPU at all (Deno: run with `--unstable-webgpu`). */
export function webgpuAvailable(): boolean {
  return gpu() !== undefined;
}

/** `vendor` of an adapter as a name where it is a known PCI id. */
export function vendorName(vendor: string | undefined): string {
  if (!vendor) return "not reported";
  const id = /^\d+$/.test(vendor)
    ? Number(vendor)
    : /^0x[0-9a-f]+$/i.test(vendor)
    ? Number(vendor)
    : NaN;
  if (Number.isFinite(id)) {
    const hex = `0x${id.toString(16)}`;
    return VENDORS[id] ? `${VENDORS[id]} (${hex})` : hex;
  }
  return vendor;
}

/** Whether an adapter is a software (CPU) implementation rather than a GPU. */
export function isSoftwareAdapter(info: AdapterInfoLike, isFallback?: boolean): boolean {
  return info.isFallbackAdapter === true || isFallback === true ||
    SOFTWARE_NAMES.test(info.description ?? "") || SOFTWARE_NAMES.test(info.device ?? "");
}

let probed: Promise<AdapterDescription | null> | undefined;

/**
 * The adapter tfjs-backend-webgpu would get (`powerPreference: high-performance`, as it asks),
 * or `null` where there is no WebGPU or no adapter. Asked once per process.
 */
export function probeAdapter(): Promise<AdapterDescription | null> {
  probed ??= (async () => {
    const g = gpu();
    if (g === undefined) return null;
    let adapter: AdapterLike | null;
    try {
      adapter = await g.requestAdapter({ powerPreference: "high-performance" });
    } catch {
      return null;
    }
    if (adapter === null) return null;
    const info = adapter.info ?? {};
    return {
      description: info.description || info.device || "unnamed adapter",
      vendor: vendorName(info.vendor),
      architecture: info.architecture ?? "",
      software: isSoftwareAdapter(info, adapter.isFallbackAdapter),
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    };
  })();
  return probed;
}

const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;

/** One line: name, vendor, architecture, software or GPU, and the buffer limits. */
export function describeAdapter(a: AdapterDescription): string {
  return `${a.description} (vendor ${a.vendor}, architecture ${
    a.architecture || "not reported"
  }, ` +
    `${a.software ? "software adapter: runs on the CPU" : "hardware GPU"}; ` +
    `maxStorageBufferBindingSize ${mib(a.maxStorageBufferBindingSize)}, ` +
    `maxBufferSize ${mib(a.maxBufferSize)})`;
}

/** Why the webgpu backend cannot start here, or `null` when an adapter was found. */
export async function webgpuUnavailableReason(): Promise<string | null> {
  if (!webgpuAvailable()) {
    return "this Deno process has no WebGPU (navigator.gpu): run it with --unstable-webgpu " +
      "(deno task run adds it for recipes whose backend is webgpu or auto)";
  }
  if ((await probeAdapter()) === null) {
    return "no WebGPU adapter was found (navigator.gpu.requestAdapter() gave none): on Linux " +
      "install the GPU's Vulkan driver and the loader libvulkan1 (or, with no GPU, " +
      "mesa-vulkan-drivers for Mesa's software Vulkan); see docs/backends.md";
  }
  return null;
}

let adapter: AdapterDescription | null = null;

/** The adapter of the running `webgpu` backend, once {@linkcode initWebgpu} has run. */
export function webgpuAdapter(): AdapterDescription | null {
  return adapter;
}

/**
 * Import tfjs-backend-webgpu, make `webgpu` the active backend and install the limit and error
 * guards. Throws a {@linkcode UserError} where WebGPU or an adapter is missing.
 */
export async function initWebgpu(): Promise<AdapterDescription> {
  const reason = await webgpuUnavailableReason();
  if (reason !== null) throw new UserError(`Cannot use backend "webgpu": ${reason}`);
  // A computed specifier: Deno neither fetches the package nor pins it in deno.lock unless this
  // backend is chosen.
  const pkg = await import(["npm:", WEBGPU_PACKAGE].join(""));
  if (tf.getBackend() !== "webgpu") {
    registerWithAdapterLimits(pkg.WebGPUBackend);
    let ok = false;
    try {
      ok = await tf.setBackend("webgpu");
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new UserError(
        `Cannot use backend "webgpu": ${WEBGPU_PACKAGE} could not create a device on ` +
          describeAdapter((await probeAdapter())!),
      );
    }
    await tf.ready();
  }
  adapter = (await probeAdapter())!;
  installGuards(tf.backend(), adapter);
  return adapter;
}

/** Device limits tfjs-backend-webgpu 4.22.0 asks the adapter for, and the one added here. */
const DEVICE_LIMITS = [
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupSizeX",
  "maxComputeInvocationsPerWorkgroup",
  // not asked for by tfjs (so WebGPU's default, 8): how many tensors one program may bind; the
  // fused Adam updates maxStorageBuffersPerShaderStage / 4 variables a program, tfjs's Concat
  // takes that many inputs less one
  "maxStorageBuffersPerShaderStage",
] as const;

interface DeviceAdapterLike {
  features: { has(name: string): boolean };
  limits: Record<string, number>;
  info?: unknown;
  requestDevice(descriptor: {
    requiredFeatures: string[];
    requiredLimits: Record<string, number>;
  }): Promise<unknown>;
}

/**
 * Register tfjs's `webgpu` backend again with the package's own device set-up (its adapter
 * request, features and limits, `base.js` in 4.22.0) plus the adapter's
 * `maxStorageBuffersPerShaderStage`. Only before the backend is first created; where the package
 * does not export its backend class, tfjs's registration stays.
 */
function registerWithAdapterLimits(
  WebGPUBackend: (new (device: unknown, info?: unknown) => tf.KernelBackend) | undefined,
): void {
  if (typeof WebGPUBackend !== "function") {
    warnFallback(
      "webgpu-limits",
      "tfjs-backend-webgpu's WebGPUBackend export",
      "the device keeps tfjs's limits (8 storage buffers a program)",
    );
    return;
  }
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", async () => {
    const adapter = await (gpu() as unknown as {
      requestAdapter(o: { powerPreference: string }): Promise<DeviceAdapterLike | null>;
    }).requestAdapter({
      powerPreference: tf.env().get("WEBGPU_USE_LOW_POWER_GPU") ? "low-power" : "high-performance",
    });
    if (adapter === null) throw new Error("no WebGPU adapter");
    const requiredFeatures = ["timestamp-query", "bgra8unorm-storage"]
      .filter((f) => adapter.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const name of DEVICE_LIMITS) {
      if (typeof adapter.limits[name] === "number") requiredLimits[name] = adapter.limits[name];
    }
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    return new WebGPUBackend(device, adapter.info);
  }, 3);
}

interface WebgpuBackendLike {
  device?: {
    limits?: { maxStorageBufferBindingSize: number; maxBufferSize: number };
    addEventListener?: (type: string, listener: (event: Event) => void) => void;
    lost?: Promise<{ message?: string; reason?: string }>;
  };
  bufferManager?: {
    acquireBuffer?: (size: number, usage: number, ...rest: unknown[]) => unknown;
  };
  read?: (dataId: unknown) => Promise<unknown>;
  readSync?: (dataId: unknown) => unknown;
  [GUARDED]?: boolean;
}

const GUARDED = Symbol.for("mi-ssl.webgpuGuards");
/** `GPUBufferUsage.STORAGE` (the constant, where the global is absent). */
const STORAGE = 0x80;

/** Errors the device reported since the last read (first few only). */
const deviceErrors: string[] = [];

/** The message of a tensor too large for the device's limits. */
export function tooLargeMessage(bytes: number, limitName: string, limit: number): string {
  const exact = (n: number) => `${n.toLocaleString("en-US")} bytes`;
  return `webgpu: a tensor of ${exact(bytes)} (${(bytes / 2 ** 20).toFixed(1)} MiB) is over ` +
    `the adapter's ${limitName}, ${exact(limit)}${
      adapter ? ` on ${adapter.description}` : ""
    }. Lower ${SIZE_FIELDS} ` +
    `(a step's largest tensors are the first U-Net level's: (labeledBatch + 2 x ` +
    `unlabeledBatch) x size x size x 2 x base floats), or use backend wasm.`;
}

function installGuards(backend: unknown, a: AdapterDescription): void {
  const b = backend as WebgpuBackendLike;
  if (b[GUARDED]) return;
  b[GUARDED] = true;
  const limits = b.device?.limits ?? a;
  const acquire = b.bufferManager?.acquireBuffer;
  if (typeof acquire === "function") {
    const manager = b.bufferManager!;
    manager.acquireBuffer = function (size: number, usage: number, ...rest: unknown[]) {
      if ((usage & STORAGE) !== 0 && size > limits.maxStorageBufferBindingSize) {
        throw new UserError(
          tooLargeMessage(size, "maxStorageBufferBindingSize", limits.maxStorageBufferBindingSize),
        );
      }
      if (size > limits.maxBufferSize) {
        throw new UserError(tooLargeMessage(size, "maxBufferSize", limits.maxBufferSize));
      }
      return acquire.call(this, size, usage, ...rest);
    };
  } else {
    warnFallback(
      "webgpu-limits",
      "tfjs-backend-webgpu's buffer manager",
      "a tensor over the device's buffer limits is not caught before it computes zeros",
    );
  }
  const device = b.device;
  device?.addEventListener?.("uncapturederror", (event: Event) => {
    const error =
      (event as unknown as { error?: { message?: string; constructor?: { name?: string } } })
        .error;
    if (deviceErrors.length < 5) {
      deviceErrors.push(
        `${error?.constructor?.name ?? "GPUError"}: ${error?.message ?? "unknown"}`,
      );
    }
  });
  device?.lost?.then((info) => {
    deviceErrors.push(`device lost (${info?.reason ?? "unknown"}): ${info?.message ?? ""}`);
  });
  // tfjs-backend-webgpu reads GPU data synchronously through a canvas, which Deno does not have
  // (data still on the CPU side reads fine): say so instead of failing inside tfjs.
  const readSync = b.readSync;
  if (typeof readSync === "function") {
    b.readSync = function (dataId: unknown) {
      try {
        return readSync.call(this, dataId);
      } catch (error) {
        throw new UserError(
          "webgpu: this command reads a tensor synchronously (dataSync), which WebGPU cannot " +
            "do under Deno; run it with backend wasm (or make its reads asynchronous: await " +
            `data()) [${(error as Error).message}]`,
        );
      }
    };
  }
  const read = b.read;
  if (typeof read === "function") {
    b.read = async function (dataId: unknown) {
      const values = await read.call(this, dataId);
      throwDeviceErrors();
      return values;
    };
  }
}

/** Throw a {@linkcode UserError} for the errors the device reported, if any (then forget them). */
export function throwDeviceErrors(): void {
  if (deviceErrors.length === 0) return;
  const errors = deviceErrors.splice(0);
  const memory = errors.some((e) => /memory/i.test(e));
  throw new UserError(
    `webgpu: the device reported ${errors.length > 1 ? "errors" : "an error"}, so the results ` +
      `are not to be trusted: ${errors.join("; ")}.` +
      (memory ? ` The run needs more GPU memory than there is: lower ${SIZE_FIELDS}.` : ""),
  );
}
