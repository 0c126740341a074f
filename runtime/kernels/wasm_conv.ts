/**
 * Stride-1 NHWC convolutions (forward, input gradient, filter gradient) for the wasm backend on
 * the SIMD matrix-product kernels of {@linkcode "./wasm_gemm.ts"}, run on the backend's heap.
 * Each function returns `null` where it does not apply (the caller then uses XNNPACK or the
 * other formulations in `wasm_conv_forward.ts` and `wasm_conv_grad.ts`).
 *
 * @module
 */
import type { tf, tfWasm } from "../../deps.ts";
import { BATCH_RECORD, type GemmKernels, instantiateGemm } from "./wasm_gemm.ts";
import { ensurePool, parallelFor, workerCount } from "./wasm_pool.ts";
import { warnFallback, wasmHeap, wasmOffset } from "../tfjs_internals.ts";

type Backend = tfWasm.BackendWasm;
type TensorInfo = tf.TensorInfo;
type Conv2DInfo = tf.backend_util.Conv2DInfo;

interface WasmModule {
  _malloc(size: number): number;
  _free(ptr: number): void;
  HEAPU8: Uint8Array;
  asm?: { memory?: WebAssembly.Memory };
  wasmMemory?: WebAssembly.Memory;
}

/** Floats of the zero buffer: the largest channel count the kernels take. */
const ZERO_FLOATS = 4096;

interface State {
  module: WasmModule;
  kernels: GemmKernels;
  memory: WebAssembly.Memory;
  zero: number;
  /** Pixel tables by geometry (pointer into the heap), most recent last. */
  tables: Map<string, number>;
}

let state: State | null = null;
let disabled = false;

/** Switch the GEMM kernels off (tests compare both paths) or back on. */
export function setGemmConvEnabled(enabled: boolean): void {
  disabled = !enabled;
}

function getState(backend: Backend): State | null {
  if (disabled) return null;
  const heap = wasmHeap(backend);
  if (heap === null) return null;
  const module = heap.module as WasmModule;
  if (state !== null && state.module === module) return state;
  const memory = heap.memory;
  let kernels: GemmKernels;
  try {
    kernels = instantiateGemm(memory);
  } catch (error) {
    disabled = true;
    warnFallback(
      "wasm-gemm",
      `the SIMD GEMM convolutions (${(error as Error).message})`,
      "convolutions run on tfjs's XNNPACK kernels (slower, the same results)",
    );
    return null;
  }
  const zero = module._malloc(ZERO_FLOATS * 4) >>> 0;
  module.HEAPU8.fill(0, zero, zero + ZERO_FLOATS * 4);
  state = { module, kernels, memory, zero, tables: new Map() };
  ensurePool(kernels, (bytes) => module._malloc(bytes) >>> 0);
  return state;
}

/** The kernels in use on `backend` (for tests and the benchmark), or null. */
export function gemmKernels(backend: Backend): GemmKernels | null {
  return getState(backend)?.kernels ?? null;
}

function offsetOf(backend: Backend, info: TensorInfo): number {
  return wasmOffset(backend, info);
}

const MAX_TABLES = 24;

/**
 * `table[p, t]`: the input pixel read by output pixel `p` (`[n, ho, wo]`, row-major) under filter
 * tap `t` (`[kh, kw]`), or -1 in the padding; input pixels `[n, h, w]`.
 */
function pixelTable(
  s: State,
  n: number,
  h: number,
  w: number,
  ho: number,
  wo: number,
  kh: number,
  kw: number,
  top: number,
  left: number,
): number {
  const key = [n, h, w, ho, wo, kh, kw, top, left].join(",");
  const hit = s.tables.get(key);
  if (hit !== undefined) {
    s.tables.delete(key);
    s.tables.set(key, hit);
    return hit;
  }
  const taps = kh * kw;
  const count = n * ho * wo * taps;
  const ptr = s.module._malloc(count * 4) >>> 0;
  if (s.tables.size >= MAX_TABLES) {
    const [oldKey, oldPtr] = s.tables.entries().next().value!;
    s.module._free(oldPtr);
    s.tables.delete(oldKey);
  }
  s.tables.set(key, ptr);
  const table = new Int32Array(s.module.HEAPU8.buffer, ptr, count);
  let q = 0;
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < ho; y++) {
      for (let x = 0; x < wo; x++) {
        for (let r = 0; r < kh; r++) {
          const sy = y + r - top;
          for (let c = 0; c < kw; c++) {
            const sx = x + c - left;
            table[q++] = sy >= 0 && sy < h && sx >= 0 && sx < w ? (b * h + sy) * w + sx : -1;
          }
        }
      }
    }
  }
  return ptr;
}

/**
 * Weights packed for the forward kernel: `bp[o / 8][t][i][o % 8] = weight(t, i, o)` for `taps`
 * taps, `ci` reduction channels and `co` outputs (a multiple of 8).
 */
function packWeights(
  backend: Backend,
  taps: number,
  ci: number,
  co: number,
  filter: TensorInfo,
  map: (t: number, i: number, o: number) => number,
): TensorInfo {
  const packed = backend.makeOutput([co / 8, taps, ci, 8], "float32");
  // Views only after the allocation: it may grow (and detach) the heap.
  const out = backend.typedArrayFromHeap(packed) as Float32Array;
  const source = backend.typedArrayFromHeap(filter) as Float32Array;
  let q = 0;
  for (let nb = 0; nb < co / 8; nb++) {
    for (let t = 0; t < taps; t++) {
      for (let i = 0; i < ci; i++) {
        for (let j = 0; j < 8; j++) out[q++] = source[map(t, i, nb * 8 + j)];
      }
    }
  }
  return packed;
}

/** Output pixels per thread below which a pointer table is made on one thread. */
const POINTER_PIXELS_PER_PART = 8192;

/**
 * Byte addresses of the input pixel of each (output pixel, tap) of `x` (`ci` channels), split by
 * pixels between the threads (1.8 M of them for the network's first 3x3 convolution at batch 12,
 * 128 px: ~1.5 ms on one thread).
 */
function pointerTable(
  backend: Backend,
  s: State,
  table: number,
  pixels: number,
  taps: number,
  x: TensorInfo,
  ci: number,
  tapMajor = false,
): TensorInfo {
  const ptrs = backend.makeOutput([pixels * taps], "int32");
  const po = offsetOf(backend, ptrs), xo = offsetOf(backend, x);
  const parts = Math.max(
    1,
    Math.min(workerCount() + 1, Math.floor(pixels / POINTER_PIXELS_PER_PART)),
  );
  runCallLists(
    backend,
    Array.from({ length: parts }, (_, k) => [[
      "make_ptrs",
      table,
      po,
      Math.round((k * pixels) / parts),
      Math.round(((k + 1) * pixels) / parts),
      pixels,
      taps,
      xo,
      s.zero,
      ci * 4,
      tapMajor ? 1 : 0,
    ]]),
  );
  return ptrs;
}

function usable(...infos: TensorInfo[]): boolean {
  return infos.every((t) => t.dtype === "float32" && t.shape.every((d) => d > 0));
}

/**
 * Forward `Conv2D` (NHWC, stride 1, dilation 1, `co % 8 == 0`), optionally fused with a bias
 * `[co]` and a ReLU (`FusedConv2D`), or null.
 */
export function gemmConv2D(
  backend: Backend,
  x: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
  epilogue: { bias?: TensorInfo; relu?: boolean } = {},
): TensorInfo | null {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const { outHeight: ho, outWidth: wo, filterHeight: kh, filterWidth: kw } = info;
  const bias = epilogue.bias;
  if (
    info.dataFormat !== "channelsLast" || info.strideHeight !== 1 || info.strideWidth !== 1 ||
    info.dilationHeight !== 1 || info.dilationWidth !== 1 || co % 8 !== 0 || ci > ZERO_FLOATS ||
    !usable(x, filter) ||
    (bias !== undefined && (bias.dtype !== "float32" || sizeOf(bias.shape) !== co))
  ) return null;
  const s = getState(backend);
  if (s === null) return null;
  const taps = kh * kw;
  if (kh === 3 && kw === 3 && useWinograd("fwd", n, ho, wo, ci, co)) {
    return winogradConv(backend, s, x, filter, info, n, h, w, ci, ho, wo, co, {
      top: info.padInfo.top,
      left: info.padInfo.left,
      flip: false,
      bias,
      relu: epilogue.relu ?? false,
    });
  }
  const out = backend.makeOutput([n, ho, wo, co], "float32");
  const packed = packWeights(backend, taps, ci, co, filter, (t, i, o) => (t * ci + i) * co + o);
  const table = pixelTable(s, n, h, w, ho, wo, kh, kw, info.padInfo.top, info.padInfo.left);
  const ptrs = pointerTable(backend, s, table, n * ho * wo, taps, x, ci);
  runRows(
    s,
    ci % 4 === 0 ? "fwd4" : "fwd",
    [
      offsetOf(backend, ptrs),
      offsetOf(backend, packed),
      offsetOf(backend, out),
    ],
    n * ho * wo,
    [
      ci,
      taps,
      co,
      s.zero,
      bias === undefined ? 0 : offsetOf(backend, bias),
      epilogue.relu ? 1 : 0,
    ],
  );
  backend.disposeData(packed.dataId);
  backend.disposeData(ptrs.dataId);
  return out;
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `Conv2DBackpropInput` for stride 1 as a forward convolution with the flipped filter. */
export function gemmConvInputGrad(
  backend: Backend,
  dy: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo | null {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const { filterHeight: kh, filterWidth: kw } = info;
  const ho = dy.shape[1], wo = dy.shape[2];
  const top = kh - 1 - info.padInfo.top, left = kw - 1 - info.padInfo.left;
  if (
    info.dataFormat !== "channelsLast" || info.strideHeight !== 1 || info.strideWidth !== 1 ||
    info.dilationHeight !== 1 || info.dilationWidth !== 1 || ci % 8 !== 0 || co > ZERO_FLOATS ||
    top < 0 || left < 0 || !usable(dy, filter)
  ) return null;
  const s = getState(backend);
  if (s === null) return null;
  const taps = kh * kw;
  if (kh === 3 && kw === 3 && useWinograd("dx", n, h, w, co, ci)) {
    return winogradConv(backend, s, dy, filter, info, n, ho, wo, co, h, w, ci, {
      top,
      left,
      flip: true,
    });
  }
  const out = backend.makeOutput([n, h, w, ci], "float32");
  // tap t = (r, c) of the flipped filter reads weight (kh-1-r, kw-1-c); reduction over co.
  const packed = packWeights(backend, taps, co, ci, filter, (t, o, i) => {
    const r = kh - 1 - Math.floor(t / kw), c = kw - 1 - (t % kw);
    return ((r * kw + c) * ci + i) * co + o;
  });
  const table = pixelTable(s, n, ho, wo, h, w, kh, kw, top, left);
  const ptrs = pointerTable(backend, s, table, n * h * w, taps, dy, co);
  runRows(
    s,
    co % 4 === 0 ? "fwd4" : "fwd",
    [
      offsetOf(backend, ptrs),
      offsetOf(backend, packed),
      offsetOf(backend, out),
    ],
    n * h * w,
    [co, taps, ci, s.zero, 0, 0],
  );
  backend.disposeData(packed.dataId);
  backend.disposeData(ptrs.dataId);
  return out;
}

/** `Conv2DBackpropFilter` for stride 1 (`co % 8 == 0`), or null. */
export function gemmConvFilterGrad(
  backend: Backend,
  x: TensorInfo,
  dy: TensorInfo,
  info: Conv2DInfo,
): TensorInfo | null {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const { outHeight: ho, outWidth: wo, filterHeight: kh, filterWidth: kw } = info;
  if (
    info.dataFormat !== "channelsLast" || info.strideHeight !== 1 || info.strideWidth !== 1 ||
    info.dilationHeight !== 1 || info.dilationWidth !== 1 || co % 8 !== 0 ||
    dy.shape[1] !== ho || dy.shape[2] !== wo || !usable(x, dy)
  ) return null;
  const s = getState(backend);
  if (s === null) return null;
  if (kh === 3 && kw === 3 && useWinograd("dw", n, ho, wo, ci, co)) {
    return winogradFilterGradient(backend, s, x, dy, n, h, w, ci, ho, wo, co, info.padInfo);
  }
  const taps = kh * kw;
  const pixels = n * ho * wo;
  const parts = Math.max(1, Math.min(workerCount() + 1, Math.floor(pixels / 1024)));
  const outs = Array.from({ length: parts }, () => backend.makeOutput([kh, kw, ci, co], "float32"));
  for (const o of outs) (backend.typedArrayFromHeap(o) as Float32Array).fill(0);
  if (ci % 4 === 0) {
    // by output rows, no pointer table
    const rows = n * ho;
    const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * rows) / parts));
    const rch = Math.max(1, Math.floor(512 / wo));
    const { top, left } = info.padInfo;
    const xo = offsetOf(backend, x), dyo = offsetOf(backend, dy);
    parallelFor(
      s.kernels,
      "wgradRows",
      outs.map((o, k) => [
        xo,
        dyo,
        offsetOf(backend, o),
        bounds[k],
        bounds[k + 1],
        rch,
        h,
        w,
        wo,
        ho,
        ci,
        co,
        kh,
        kw,
        top,
        left,
      ]),
    );
    return sumParts(backend, outs);
  }
  const table = pixelTable(s, n, h, w, ho, wo, kh, kw, info.padInfo.top, info.padInfo.left);
  const ptrs = pointerTable(backend, s, table, pixels, taps, x, ci, true);
  const po = offsetOf(backend, ptrs), dyo = offsetOf(backend, dy);
  const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * pixels) / parts));
  parallelFor(
    s.kernels,
    "wgradAny",
    outs.map((
      o,
      k,
    ) => [po, dyo, offsetOf(backend, o), bounds[k], bounds[k + 1], ci, taps, co, pixels]),
  );
  backend.disposeData(ptrs.dataId);
  return sumParts(backend, outs);
}

/** Add the partial filter gradients of the threads into the first; free the others. */
function sumParts(backend: Backend, outs: TensorInfo[]): TensorInfo {
  if (outs.length > 1) {
    const total = backend.typedArrayFromHeap(outs[0]) as Float32Array;
    for (let k = 1; k < outs.length; k++) {
      const part = backend.typedArrayFromHeap(outs[k]) as Float32Array;
      for (let i = 0; i < total.length; i++) total[i] += part[i];
      backend.disposeData(outs[k].dataId);
    }
  }
  return outs[0];
}

/** When the 3x3 convolutions run as Winograd F(2x2, 3x3): never, always, or by shape. */
export type WinogradMode = "off" | "on" | "auto";

let winogradMode: WinogradMode = "auto";
const winogradUses = { fwd: 0, dx: 0, dw: 0 };
const winogradTiles = { 2: 0, 4: 0 };

/** Choose when the 3x3 stride-1 convolutions run as Winograd F(2x2, 3x3) (tests, benchmarks). */
export function setWinogradMode(mode: WinogradMode): void {
  winogradMode = mode;
}

/** Forward and input-gradient calls that ran as F(2x2, 3x3) and as F(4x4, 3x3) so far. */
export function winogradTileCount(): { 2: number; 4: number } {
  return { ...winogradTiles };
}

/** Forward and input-gradient calls that ran as Winograd so far (tests check the dispatch). */
export function winogradCallCount(): { fwd: number; dx: number; dw: number } {
  return { ...winogradUses };
}

/**
 * Whether a 3x3 stride-1 convolution (`fwd`: forward, `dx`: input gradient, `dw`: filter
 * gradient) of `n` images of `ho x wo` outputs, `cr` reduction (for `dw`: input) and `co` output
 * channels runs as Winograd.
 */
export function useWinograd(
  _kind: "fwd" | "dx" | "dw",
  _n: number,
  ho: number,
  wo: number,
  cr: number,
  co: number,
): boolean {
  if (winogradMode === "off" || cr % 4 !== 0 || co % 8 !== 0 || cr > ZERO_FLOATS) return false;
  if (co > ZERO_FLOATS) return false;
  if (winogradMode === "on") return true;
  // Measured faster for every U-Net shape from 4x4 to 128x128 outputs, 8 to 256 channels,
  // batch 4 to 12 (docs/performance.md); smaller images keep the direct kernel.
  return ho >= 4 && wo >= 4;
}

let winogradTile: 0 | 2 | 4 = 0;

/**
 * Output tile of the Winograd convolutions (forward, input and filter gradients): F(2x2, 3x3)
 * (2), F(4x4, 3x3) (4), or by shape (0, the default: see {@linkcode winogradTileFor}).
 */
export function setWinogradTile(tile: 0 | 2 | 4): void {
  winogradTile = tile;
}

/**
 * The output tile of the Winograd convolutions for `ho x wo` outputs: F(4x4, 3x3) from 32x32 up,
 * where it measured 1.1-1.8x faster than F(2x2, 3x3) for the forward and input gradient and
 * 1.3-1.6x for the filter gradient (36 products per 16 outputs instead of 64; its transforms of
 * the filter and its gradient, in JavaScript, cost more than that saves on small images), else
 * F(2x2, 3x3).
 */
export function winogradTileFor(ho: number, wo: number): 2 | 4 {
  if (winogradTile !== 0) return winogradTile;
  return ho >= 32 && wo >= 32 ? 4 : 2;
}

/** Floats of Winograd scratch (V and M of one chunk) per thread. */
let winogradBudget = 1 << 16;

/** The scratch floats per thread of the Winograd kernels (benchmarks tune it). */
export function setWinogradBudget(floats: number): void {
  winogradBudget = floats;
}

/** Multiply-adds of the Winograd products per thread below which a convolution stays on one. */
const WINO_MACS_PER_PART = 1 << 19;

/**
 * Threads to split `tiles` Winograd tiles between, `macs` multiply-adds per tile: by the work, not
 * the pixels (an 8x8 image with 256 channels is as much work as a 128x128 one with 16), at least
 * 6 tiles (a register tile of the products) a part.
 */
function winogradParts(tiles: number, macs: number): number {
  return Math.max(
    1,
    Math.min(
      workerCount() + 1,
      Math.floor(tiles / 6),
      Math.floor((tiles * macs) / WINO_MACS_PER_PART),
    ),
  );
}

/** Filter quads (of 4 channel pairs) per thread below which a filter transform stays on one. */
const FILTER_QUADS_PER_PART = 1024;

/**
 * The transformed filter `U` (`[a * a, nred, nout]`, packed by 8 output channels, into `u`) of the
 * 3x3 filter `filter` read with strides `[base, sr, sc, si, so]` (floats): the `wino_ft_*` kernels
 * of `wasm_winograd.ts` on the pool, four output channels a vector where `so` is 1 (the forward),
 * else four reduction channels (`si` 1: the flipped filter of the input gradient).
 */
function transformFilter(
  backend: Backend,
  filter: TensorInfo,
  u: TensorInfo,
  nred: number,
  nout: number,
  strides: [number, number, number, number, number],
  m4: boolean,
): void {
  const laneOut = strides[4] === 1;
  if (!(laneOut || (strides[3] === 1 && nred % 4 === 0)) || nout % 8 !== 0) {
    throw new Error(`transformFilter: no kernel for strides ${strides} (${nred} -> ${nout})`);
  }
  const outer = laneOut ? nout / 4 : nout;
  const quads = (nred * nout) / 4;
  const parts = Math.max(
    1,
    Math.min(workerCount() + 1, outer, Math.floor(quads / FILTER_QUADS_PER_PART)),
  );
  const fo = offsetOf(backend, filter), uo = offsetOf(backend, u);
  const name = `${m4 ? "wino4_" : "wino_"}ft_${laneOut ? "o" : "r"}`;
  runCallLists(
    backend,
    Array.from({ length: parts }, (_, k) => [[
      name,
      fo,
      uo,
      nred,
      nout,
      ...strides,
      Math.round((k * outer) / parts),
      Math.round(((k + 1) * outer) / parts),
    ]]),
  );
}

/**
 * A 3x3 stride-1 convolution of `x` (`[n, h, w, cr]`) as Winograd F(2x2, 3x3) into `[n, ho, wo,
 * co]`: the filter `[3, 3, ci, co]` of `info` as is (`flip` false: forward, `cr = ci`), or
 * flipped with its channel axes swapped (`flip` true: the input gradient, `cr = co` of the
 * filter); padding `top` / `left`. The tiles split between the threads, each working through
 * chunks that keep its V and M in cache.
 */
function winogradConv(
  backend: Backend,
  s: State,
  x: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
  n: number,
  h: number,
  w: number,
  cr: number,
  ho: number,
  wo: number,
  co: number,
  o: { top: number; left: number; flip: boolean; bias?: TensorInfo; relu?: boolean },
): TensorInfo {
  winogradUses[o.flip ? "dx" : "fwd"]++;
  const fci = info.inChannels, fco = info.outChannels;
  const m4 = winogradTileFor(ho, wo) === 4, mt = m4 ? 4 : 2, nm = m4 ? 36 : 16;
  winogradTiles[m4 ? 4 : 2]++;
  const u = backend.makeOutput([nm, cr, co], "float32");
  transformFilter(
    backend,
    filter,
    u,
    cr,
    co,
    o.flip
      // g(r, c, red = o', out = i') = filter[2 - r, 2 - c, i', o']
      ? [8 * fci * fco, -3 * fci * fco, -fci * fco, 1, fco]
      : [0, 3 * fci * fco, fci * fco, fco, 1],
    m4,
  );
  const out = backend.makeOutput([n, ho, wo, co], "float32");
  const th = Math.ceil(ho / mt), tw = Math.ceil(wo / mt), tiles = n * th * tw;
  const chunk = Math.max(
    6,
    Math.min(Math.ceil(tiles / 6) * 6, Math.floor(winogradBudget / (nm * (cr + co)) / 6) * 6),
  );
  const parts = winogradParts(tiles, nm * cr * co);
  const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * tiles) / parts));
  // One cache line more per matrix: the transforms read or write the 16 matrices at once, and at
  // power-of-two strides all 16 streams fall in one set of the L1 cache (up to 1.9x slower).
  const ksa = chunk * cr * 4 + 64, ksm = chunk * co * 4 + 64;
  const perPart = nm * (ksa + ksm);
  const scratch = s.module._malloc(parts * perPart) >>> 0;
  try {
    const xo = offsetOf(backend, x), uo = offsetOf(backend, u), oo = offsetOf(backend, out);
    const bo = o.bias === undefined ? s.zero : offsetOf(backend, o.bias);
    const lists: KernelCall[][] = [];
    for (let k = 0; k < parts; k++) {
      const v = scratch + k * perPart, m = v + nm * ksa;
      const calls: KernelCall[] = [];
      const prefix = m4 ? "wino4_" : "wino_";
      for (let t0 = bounds[k]; t0 < bounds[k + 1]; t0 += chunk) {
        const t1 = Math.min(t0 + chunk, bounds[k + 1]);
        calls.push(
          [`${prefix}in`, xo, v, t0, t1, h, w, cr, th, tw, o.top, o.left, ksa, s.zero],
          [`${prefix}gemm`, v, uo, m, t1 - t0, cr, co, ksa, ksm],
          [`${prefix}out`, m, oo, t0, t1, ho, wo, co, th, tw, ksm, bo, o.relu ? 1 : 0],
        );
      }
      lists.push(calls);
    }
    runCallLists(backend, lists);
  } finally {
    s.module._free(scratch);
    backend.disposeData(u.dataId);
  }
  return out;
}

/**
 * The filter gradient `[3, 3, ci, co]` of a 3x3 stride-1 convolution of `x` (`[n, h, w, ci]`)
 * with output gradient `dy` (`[n, ho, wo, co]`) as Winograd F(2x2, 3x3): per chunk of tiles the
 * input transform of the forward and `A dy A^T`, then the 16 products `V[k]^T dY[k]` summed over
 * the tiles into each thread's `dU` `[16, ci, co]`; the parts are added in part order and
 * `G^T dU G` gives the filter's gradient.
 */
function winogradFilterGradient(
  backend: Backend,
  s: State,
  x: TensorInfo,
  dy: TensorInfo,
  n: number,
  h: number,
  w: number,
  ci: number,
  ho: number,
  wo: number,
  co: number,
  pad: { top: number; left: number },
): TensorInfo {
  winogradUses.dw++;
  const m4 = winogradTileFor(ho, wo) === 4, mt = m4 ? 4 : 2, nm = m4 ? 36 : 16;
  winogradTiles[m4 ? 4 : 2]++;
  const th = Math.ceil(ho / mt), tw = Math.ceil(wo / mt), tiles = n * th * tw;
  const chunk = Math.max(32, Math.min(tiles, Math.floor(winogradBudget / (nm * (ci + co)))));
  const parts = winogradParts(tiles, nm * ci * co);
  const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * tiles) / parts));
  const duBytes = nm * ci * co * 4, prefix = m4 ? "wino4_" : "wino_";
  // Padded by a cache line, as in winogradConv.
  const ksa = chunk * ci * 4 + 64, ksd = chunk * co * 4 + 64;
  const perPart = nm * (ksa + ksd) + duBytes;
  const out = backend.makeOutput([3, 3, ci, co], "float32");
  const scratch = s.module._malloc(parts * perPart) >>> 0;
  try {
    const xo = offsetOf(backend, x), dyo = offsetOf(backend, dy);
    const lists: KernelCall[][] = [];
    for (let k = 0; k < parts; k++) {
      const du = scratch + k * perPart, v = du + duBytes, d = v + nm * ksa;
      const calls: KernelCall[] = [];
      for (let t0 = bounds[k]; t0 < bounds[k + 1]; t0 += chunk) {
        const t1 = Math.min(t0 + chunk, bounds[k + 1]);
        calls.push(
          [`${prefix}in`, xo, v, t0, t1, h, w, ci, th, tw, pad.top, pad.left, ksa, s.zero],
          [`${prefix}dyt`, dyo, d, t0, t1, ho, wo, co, th, tw, ksd, s.zero],
          // the part's first chunk stores its dU (no zero fill beforehand), the others add to it
          [`${prefix}wgemm${t0 === bounds[k] ? "0" : ""}`, v, d, du, t1 - t0, ci, co, ksa, ksd],
        );
      }
      lists.push(calls);
    }
    runCallLists(backend, lists);
    // G^T dU G of the parts' sum, added in part order, split by float quads
    const n4 = (ci * co) / 4, oo = offsetOf(backend, out);
    const fparts = Math.max(1, Math.min(workerCount() + 1, Math.floor(n4 / FILTER_QUADS_PER_PART)));
    runCallLists(
      backend,
      Array.from({ length: fparts }, (_, k) => [[
        `${prefix}fgt`,
        scratch,
        oo,
        ci * co,
        parts,
        perPart,
        Math.round((k * n4) / fparts),
        Math.round(((k + 1) * n4) / fparts),
      ]]),
    );
  } finally {
    s.module._free(scratch);
  }
  return out;
}

/** Split output rows `[0, rows)` among the threads and run the forward kernel. */
function runRows(
  s: State,
  kind: "fwd" | "fwd4",
  pointers: number[],
  rows: number,
  dims: number[],
): void {
  const parts = Math.max(1, Math.min(workerCount() + 1, Math.floor(rows / 256)));
  const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * rows) / parts));
  parallelFor(
    s.kernels,
    kind,
    Array.from({ length: parts }, (_, k) => [...pointers, bounds[k], bounds[k + 1], ...dims]),
  );
}

/** Rows per thread below which a gather stays on the calling thread. */
const GATHER_ROWS_PER_PART = 16384;

/**
 * `GatherV2` along axis 0 without batch dimensions (the warp's gathers: `x` `[N, ...]` of 4-byte
 * elements, `indices` int32): one row copy per index, split between the threads. Null where it
 * does not apply, or when an index is outside `[0, N)` (the caller then runs tfjs's kernel).
 */
export function gemmGather(
  backend: Backend,
  x: TensorInfo,
  indices: TensorInfo,
): TensorInfo | null {
  if (
    (x.dtype !== "float32" && x.dtype !== "int32") || indices.dtype !== "int32" ||
    x.shape.length < 1
  ) return null;
  const n = x.shape[0];
  const cb = 4 * sizeOf(x.shape.slice(1));
  const rows = sizeOf(indices.shape);
  if (n === 0 || cb === 0 || rows === 0) return null;
  const s = getState(backend);
  if (s === null) return null;
  const idx = new Int32Array(s.module.HEAPU8.buffer, offsetOf(backend, indices), rows);
  for (let r = 0; r < rows; r++) {
    const i = idx[r];
    if (i < 0 || i >= n) return null;
  }
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const parts = Math.max(1, Math.min(workerCount() + 1, Math.floor(rows / GATHER_ROWS_PER_PART)));
  const bounds = Array.from({ length: parts + 1 }, (_, k) => Math.round((k * rows) / parts));
  const xo = offsetOf(backend, x), io = offsetOf(backend, indices), oo = offsetOf(backend, out);
  parallelFor(
    s.kernels,
    "gather",
    Array.from({ length: parts }, (_, k) => [xo, io, oo, bounds[k], bounds[k + 1], cb]),
  );
  return out;
}

/** A call of a function of the kernel module: its export name, then its int32 arguments. */
export type KernelCall = [string, ...number[]];

let callListJobs = 0;

/** Jobs {@linkcode runCallLists} has run (tests check which kernels use it). */
export function callListJobCount(): number {
  return callListJobs;
}

/** Threads the kernel pool runs parts on for `backend` (the calling one and its helpers). */
export function kernelThreads(backend: Backend): number {
  return getState(backend) === null ? 1 : workerCount() + 1;
}

/**
 * Runs each list of `parts` as one part of a pool job (part 0 on the calling thread, the others
 * on helpers while they last), the calls of a list in order. False, with nothing run, where the
 * kernel module does not run on `backend`. Parts must write disjoint memory.
 */
export function runCallLists(backend: Backend, parts: KernelCall[][]): boolean {
  const s = getState(backend);
  if (s === null) return false;
  const total = parts.reduce((a, p) => a + p.length, 0);
  if (total === 0) return true;
  callListJobs++;
  const table = s.module._malloc(total * BATCH_RECORD * 4) >>> 0;
  const view = new Int32Array(s.memory.buffer, table, total * BATCH_RECORD);
  const jobs: number[][] = [];
  let r = 0;
  for (const calls of parts) {
    jobs.push([table + r * BATCH_RECORD * 4, calls.length]);
    for (const [name, ...args] of calls) {
      if (args.length >= BATCH_RECORD) {
        throw new Error(`runCallLists: ${name} has too many arguments`);
      }
      const o = r * BATCH_RECORD;
      view[o] = s.kernels.functionIndex(name);
      for (let i = 0; i < args.length; i++) view[o + 1 + i] = args[i] | 0;
      r++;
    }
  }
  try {
    parallelFor(s.kernels, "batch", jobs);
  } finally {
    s.module._free(table);
  }
  return true;
}
