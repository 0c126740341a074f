/**
 * Helpers shared by the format readers and writers: reading a file with a clear error,
 * byte-order swaps, conversions between voxel types.
 *
 * @module
 */
import { UserError } from "../errors.ts";
import { VOXEL_ARRAYS, type VoxelArray, type VoxelType } from "./volume_data.ts";

/** The error for a file that cannot be read: `Cannot read "<path>": <problem>`. */
export function readError(path: string, problem: string, cause?: unknown): UserError {
  return new UserError(`Cannot read "${path}": ${problem}`, cause ? { cause } : undefined);
}

/** The error for a file that cannot be written: `Cannot write "<path>": <problem>`. */
export function writeError(path: string, problem: string, cause?: unknown): UserError {
  return new UserError(`Cannot write "${path}": ${problem}`, cause ? { cause } : undefined);
}

/** Why a file system call failed, in a few words. */
export function fsProblem(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return (error as Error).message ?? String(error);
}

/** The bytes of a file; a missing or unreadable file is a {@linkcode UserError} naming it. */
export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw readError(path, fsProblem(error), error);
  }
}

/** Write bytes, creating nothing but the file; failures are a {@linkcode UserError}. */
export async function writeBytes(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await Deno.writeFile(path, bytes);
  } catch (error) {
    throw writeError(path, fsProblem(error), error);
  }
}

/** A plain `Uint8Array` view of zlib's output (a node `Buffer`, whose `slice` does not copy). */
export function plainBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reverse the byte order of every `width`-byte word of `bytes`, in place. */
export function swapBytes(bytes: Uint8Array, width: number): void {
  if (width <= 1) return;
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

/**
 * A typed array of `type` holding a **copy** of `count` values at `offset` in `bytes`, stored
 * little-endian unless `bigEndian`.
 */
export function typedFromBytes(
  bytes: Uint8Array,
  offset: number,
  count: number,
  type: VoxelType,
  bigEndian = false,
): VoxelArray {
  const Ctor = VOXEL_ARRAYS[type];
  const n = count * Ctor.BYTES_PER_ELEMENT;
  // Not `bytes.slice`: on a node Buffer (zlib's output) that is a view, not a copy.
  const copy = new Uint8Array(n);
  copy.set(bytes.subarray(offset, offset + n));
  if (bigEndian) swapBytes(copy, Ctor.BYTES_PER_ELEMENT);
  return new Ctor(copy.buffer);
}

/** The bytes of a typed array (a view, no copy), optionally as a big-endian copy. */
export function bytesOf(data: VoxelArray, bigEndian = false): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!bigEndian) return view;
  const copy = new Uint8Array(view);
  swapBytes(copy, data.BYTES_PER_ELEMENT);
  return copy;
}

const RANGES: Partial<Record<VoxelType, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 65535],
  int16: [-32768, 32767],
  uint32: [0, 4294967295],
  int32: [-2147483648, 2147483647],
};

/**
 * `data` as `type`: the same array when it already is, else a copy, rounded and clamped to the
 * range of integer types. Each value is first mapped by `(v - inter) / slope`.
 */
export function convertVoxels(
  data: VoxelArray,
  type: VoxelType,
  slope = 1,
  inter = 0,
): VoxelArray {
  const Ctor = VOXEL_ARRAYS[type];
  const identity = slope === 1 && inter === 0;
  if (identity && data instanceof Ctor) return data;
  const out = new Ctor(data.length);
  const range = RANGES[type];
  for (let i = 0; i < data.length; i++) {
    let v = identity ? data[i] : (data[i] - inter) / slope;
    if (range) {
      v = Math.round(v);
      v = v < range[0] ? range[0] : v > range[1] ? range[1] : v;
    }
    out[i] = v;
  }
  return out;
}

/** `path` without its directory. */
export function basename(path: string): string {
  const i = path.replace(/[\\/]+$/, "").search(/[^\\/]*$/);
  return path.slice(i);
}

/** The directory of `path` (`.` for a bare name). */
export function dirname(path: string): string {
  const i = path.search(/[\\/][^\\/]*$/);
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** `dir/name`, or `name` when it is absolute. */
export function joinPath(dir: string, name: string): string {
  if (name.startsWith("/") || /^[A-Za-z]:[\\/]/.test(name)) return name;
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}
