/**
 * On-disk cache of preprocessed cases (one volume each), shared by the file-based dataset
 * plugins. An entry is keyed by the dataset, the preprocessing options (directory name) and the
 * size and modification time of every source file (inside the entry), and carries a CRC-32 of
 * its voxels: a stale, truncated or corrupted entry is rebuilt, never reused.
 *
 * Entry layout (little-endian): `MISSLC01`, a uint32 header length, a JSON header padded with
 * spaces to a multiple of 4 bytes, the image as float32, then the labels as uint8 (if any).
 *
 * @module
 */
import { crc32 } from "node:zlib";
import { join, relative, resolve } from "node:path";
import { CACHE_DIR_ENV, defaultCacheDir } from "../../core/dataset.ts";
import { UserError } from "../../core/errors.ts";
import type { PreparedCase } from "./preprocess.ts";

const MAGIC = "MISSLC01";
const FORMAT = 2; // 2: the header carries the affine

/** Size and modification time of each source file of a case. */
export type SourceSignature = [string, number, number][];

/**
 * The signature of a case's source files: `[path, size, mtime]`, the path relative to `root`
 * (the data folder) when given, so that the same folder reached by another path (a symlink, a
 * mount, a relative path) matches the same cache entry.
 */
export async function sourceSignature(files: string[], root?: string): Promise<SourceSignature> {
  const out: SourceSignature = [];
  for (const f of files) {
    const name = root === undefined ? f : relative(root, f);
    try {
      const s = await Deno.stat(f);
      out.push([name, s.size, s.mtime?.getTime() ?? 0]);
    } catch {
      out.push([name, -1, 0]); // missing: the reader reports it
    }
  }
  return out;
}

/** A short stable hash of a JSON-serialisable value (hex SHA-256 prefix). */
export async function hashKey(value: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]+/g, "_");
}

async function probeWritable(dir: string): Promise<boolean> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    const probe = join(dir, `.probe-${crypto.randomUUID()}`);
    await Deno.writeTextFile(probe, "ok");
    await Deno.remove(probe);
    return true;
  } catch {
    return false;
  }
}

/**
 * The cache directory to use: `false` -> none; a path -> that (it must be writable); absent ->
 * the per-user cache folder ({@linkcode defaultCacheDir}: `$MISSL_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/mi-ssl` or `~/.cache/mi-ssl`), or none when it cannot be written. The data
 * folder itself is never written.
 *
 * @throws {UserError} When an explicitly named cache directory cannot be written.
 */
export async function resolveCacheDir(
  option: string | false | undefined,
  _root: string,
  baseDir: string,
  log?: (message: string) => void,
): Promise<string | null> {
  if (option === false) return null;
  if (option !== undefined) {
    const dir = resolve(baseDir, option);
    if (!(await probeWritable(dir))) {
      throw new UserError(`Cannot use the cache directory "${dir}": it cannot be written`);
    }
    return dir;
  }
  const dir = defaultCacheDir();
  if (dir !== null && await probeWritable(dir)) return dir;
  log?.(
    dir === null
      ? `No dataset cache: neither ${CACHE_DIR_ENV}, XDG_CACHE_HOME nor HOME is set`
      : `No dataset cache: "${dir}" cannot be written (set ${CACHE_DIR_ENV} to another folder)`,
  );
  return null;
}

/** The outcome of a cache look-up. */
export type CacheLookup =
  | { status: "hit"; value: PreparedCase }
  | { status: "miss" | "stale" }
  | { status: "corrupt"; reason: string };

/** The cache of one dataset and one set of preprocessing options. */
export class CaseCache {
  /** @param dir The directory of this dataset's entries for these options. */
  constructor(readonly dir: string) {}

  /**
   * Open (create) the cache directory of `datasetId` under `root` for the preprocessing key
   * `key` (any JSON value: it is hashed into the directory name).
   */
  static async open(root: string, datasetId: string, key: unknown): Promise<CaseCache | null> {
    const dir = join(root, `${safeName(datasetId)}-${await hashKey({ FORMAT, key })}`);
    try {
      await Deno.mkdir(dir, { recursive: true });
      return new CaseCache(dir);
    } catch {
      return null;
    }
  }

  /** The entry file of a case. */
  path(id: string): string {
    return join(this.dir, `${safeName(id)}.bin`);
  }

  /** Read the entry of `id`, checking its source signature and checksum. */
  async read(id: string, source: SourceSignature): Promise<CacheLookup> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.path(id));
    } catch {
      return { status: "miss" };
    }
    if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
      return { status: "corrupt", reason: "bad magic" };
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLength = view.getUint32(8, true);
    const start = 12 + headerLength;
    if (start > bytes.length || start % 4 !== 0) {
      return { status: "corrupt", reason: "bad header length" };
    }
    let header: {
      id: string;
      patient: string;
      shape: [number, number, number];
      spacing?: [number, number, number];
      affine?: number[][];
      hasLabel: boolean;
      source: SourceSignature;
      crc: number;
    };
    try {
      header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, start)));
    } catch {
      return { status: "corrupt", reason: "unreadable header" };
    }
    if (header.id !== id) return { status: "corrupt", reason: `holds "${header.id}"` };
    if (JSON.stringify(header.source) !== JSON.stringify(source)) return { status: "stale" };
    const n = header.shape[0] * header.shape[1] * header.shape[2];
    const expected = start + n * 4 + (header.hasLabel ? n : 0);
    if (bytes.length !== expected) {
      return { status: "corrupt", reason: `${bytes.length} bytes, expected ${expected}` };
    }
    const payload = bytes.subarray(start);
    if (crc32(payload) !== header.crc) return { status: "corrupt", reason: "checksum mismatch" };
    const buffer = bytes.buffer as ArrayBuffer;
    const offset = bytes.byteOffset + start;
    return {
      status: "hit",
      value: {
        id: header.id,
        patient: header.patient,
        shape: header.shape,
        spacing: header.spacing,
        ...(header.affine ? { affine: header.affine } : {}),
        image: new Float32Array(buffer, offset, n),
        label: header.hasLabel ? new Uint8Array(buffer, offset + n * 4, n) : null,
      },
    };
  }

  /** Write the entry of a case (atomically: a temporary file renamed into place). */
  async write(value: PreparedCase, source: SourceSignature): Promise<void> {
    const image = new Uint8Array(
      value.image.buffer,
      value.image.byteOffset,
      value.image.byteLength,
    );
    const label = value.label;
    let crc = crc32(image);
    if (label) crc = crc32(label, crc);
    let json = JSON.stringify({
      id: value.id,
      patient: value.patient,
      shape: value.shape,
      spacing: value.spacing,
      affine: value.affine,
      hasLabel: label !== null,
      source,
      crc,
    });
    let headerBytes = new TextEncoder().encode(json);
    json += " ".repeat((4 - ((12 + headerBytes.length) % 4)) % 4);
    headerBytes = new TextEncoder().encode(json);
    const out = new Uint8Array(12 + headerBytes.length + image.length + (label?.length ?? 0));
    out.set(new TextEncoder().encode(MAGIC), 0);
    new DataView(out.buffer).setUint32(8, headerBytes.length, true);
    out.set(headerBytes, 12);
    out.set(image, 12 + headerBytes.length);
    if (label) out.set(label, 12 + headerBytes.length + image.length);
    const target = this.path(value.id);
    const tmp = `${target}.tmp-${crypto.randomUUID()}`;
    await Deno.writeFile(tmp, out);
    await Deno.rename(tmp, target);
  }
}
