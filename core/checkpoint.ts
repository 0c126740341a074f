/**
 * Checkpoints: one file holding a JSON header (iteration, rng state, anything the trainer needs)
 * and float32 tensors by name, written to a temporary name and renamed, so that a crash
 * mid-write never leaves a corrupt checkpoint behind.
 *
 * Layout: 8 bytes magic `MISSLCK1`, uint32 LE header length, UTF-8 JSON header, zero padding to
 * a multiple of 4, then every tensor's float32 data in header order.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { UserError } from "./errors.ts";

const MAGIC = "MISSLCK1";

/** One stored tensor. */
export interface StoredTensor {
  /** Its shape. */
  shape: number[];
  /** Its values, row-major. */
  data: Float32Array;
}

/** A loaded checkpoint. */
export interface Checkpoint<M> {
  /** The file it was read from (messages name it). */
  path: string;
  /** The JSON header the trainer wrote (iteration, rng state, ...). */
  meta: M;
  /** The tensors by name. */
  tensors: Map<string, StoredTensor>;
}

/** Write `tensors` and `meta` to `path` atomically. */
export async function saveCheckpoint<M>(
  path: string,
  meta: M,
  tensors: Map<string, tf.Tensor>,
): Promise<void> {
  await writeFileAtomic(path, await encodeCheckpoint(meta, tensors));
}

/** The bytes of a checkpoint file holding `tensors` and `meta` (`serve` sends them as such). */
export async function encodeCheckpoint<M>(
  meta: M,
  tensors: Map<string, tf.Tensor>,
): Promise<Uint8Array> {
  const entries: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
  for (const [name, t] of tensors) {
    entries.push({ name, shape: t.shape, data: (await t.data()) as Float32Array });
  }
  const header = new TextEncoder().encode(JSON.stringify({
    meta,
    tensors: entries.map(({ name, shape }) => ({ name, shape })),
  }));
  const pad = (4 - ((12 + header.length) % 4)) % 4;
  const total = entries.reduce((s, e) => s + e.data.length, 0);
  const bytes = new Uint8Array(12 + header.length + pad + 4 * total);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(bytes.buffer).setUint32(8, header.length, true);
  bytes.set(header, 12);
  const floats = new Float32Array(bytes.buffer, 12 + header.length + pad, total);
  let offset = 0;
  for (const e of entries) {
    floats.set(e.data, offset);
    offset += e.data.length;
  }
  return bytes;
}

/** Read a checkpoint written by {@linkcode saveCheckpoint}. */
export async function loadCheckpoint<M>(path: string): Promise<Checkpoint<M>> {
  return decodeCheckpoint(await Deno.readFile(path), path);
}

/**
 * Decode the bytes of a checkpoint file ({@linkcode encodeCheckpoint}); `path` names it in
 * messages (the browser page reads one it fetched).
 */
export function decodeCheckpoint<M>(bytes: Uint8Array, path: string): Checkpoint<M> {
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new Error(`Cannot read checkpoint "${path}": not a checkpoint file`);
  }
  const hlen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (12 + hlen > bytes.length) throw new Error(`Cannot read checkpoint "${path}": truncated`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen))) as {
    meta: M;
    tensors: Array<{ name: string; shape: number[] }>;
  };
  const pad = (4 - ((12 + hlen) % 4)) % 4;
  let offset = 12 + hlen + pad;
  const tensors = new Map<string, StoredTensor>();
  for (const { name, shape } of header.tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (offset + 4 * n > bytes.length) {
      throw new Error(`Cannot read checkpoint "${path}": truncated`);
    }
    const data = new Float32Array(bytes.slice(offset, offset + 4 * n).buffer);
    tensors.set(name, { shape, data });
    offset += 4 * n;
  }
  return { path, meta: header.meta, tensors };
}

/** Options of {@linkcode restoreTensors}. */
export interface RestoreOptions {
  /**
   * Targets that may be missing from the checkpoint (they keep their values), e.g. the
   * optimizer's moments when only the weights are restored.
   * @default {none}
   */
  optional?: (name: string) => boolean;
}

/**
 * Assign a loaded checkpoint's tensors to `targets`, by name: the one restore of the trainer
 * (`--resume`, `eval`) and `predict`.
 *
 * @throws {UserError} When a target has no tensor in the checkpoint, or one of another shape.
 */
export function restoreTensors(
  checkpoint: Checkpoint<unknown>,
  targets: Map<string, tf.Variable>,
  options: RestoreOptions = {},
): void {
  const { path } = checkpoint;
  for (const [name, target] of targets) {
    const stored = checkpoint.tensors.get(name);
    if (stored === undefined) {
      if (options.optional?.(name)) continue;
      throw new UserError(`Checkpoint "${path}" has no tensor "${name}"`);
    }
    if (stored.shape.join("x") !== target.shape.join("x")) {
      throw new UserError(
        `Checkpoint "${path}": "${name}" has shape ${stored.shape}, the model ${target.shape}`,
      );
    }
    const value = tf.tensor(stored.data, stored.shape);
    target.assign(value);
    value.dispose();
  }
}

/** Write `data` to a temporary file beside `path`, then rename it over `path`. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  if (typeof data === "string") await Deno.writeTextFile(tmp, data);
  else await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, path);
}
