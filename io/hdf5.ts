/**
 * HDF5 reading (and a small writer) through `h5wasm`, the HDF5 C library compiled to
 * WebAssembly, for the SSL4MIS layout: each file holds an `image` (float32, in [0, 1]) and a
 * `label` (uint8) dataset, 2D for training slices and 3D (`[slices, height, width]`) for
 * validation volumes.
 *
 * h5wasm works on an in-memory file system: a file's bytes are copied in, opened, read and
 * removed again, synchronously, so concurrent reads cannot interleave. The WebAssembly module is
 * started on the first read. HDF5's own error stack is turned into an exception (not printed)
 * and its last line goes into the {@linkcode UserError}.
 *
 * Axis order: HDF5 datasets are row-major; `shape` is returned as stored. The SSL4MIS files hold
 * no spacing, so `spacing` is ones and `spacingKnown` false, unless the dataset carries a
 * `spacing` attribute (as {@linkcode writeHdf5} writes).
 *
 * @module
 */
import { type H5wasm, loadH5wasm } from "../deps.ts";
import { readBytes, readError, writeBytes, writeError } from "./_util.ts";
import type { VolumeData, VoxelArray } from "./volume_data.ts";
import { voxelCount } from "./volume_data.ts";

type H5Module = Awaited<H5wasm["ready"]>;

let loading: Promise<{ h5: H5wasm; module: H5Module }> | null = null;
let fileCounter = 0;

/** The h5wasm library, started once, with HDF5 errors thrown instead of printed. */
function h5(): Promise<{ h5: H5wasm; module: H5Module }> {
  loading ??= (async () => {
    const lib = await loadH5wasm();
    const module = await lib.ready;
    module.activate_throwing_error_handler();
    return { h5: lib, module };
  })();
  return loading;
}

/** The last, most specific line of an HDF5 error stack (`truncated file: eof = 100, ...`). */
function hdf5Problem(error: unknown): string {
  const text = String((error as Error)?.message ?? error);
  const lines = [...text.matchAll(/in [A-Za-z0-9_]+\(\): (.+)$/gm)].map((m) => m[1].trim());
  return lines.at(-1) ?? text.split("\n")[0];
}

const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** Whether an HDF5 signature is at offset 0, 512, 1024, ... (HDF5's user-block positions). */
function hasSignature(bytes: Uint8Array): boolean {
  for (let at = 0; at + 8 <= bytes.length; at = at === 0 ? 512 : at * 2) {
    if (SIGNATURE.every((b, i) => bytes[at + i] === b)) return true;
  }
  return false;
}

/** A dataset read as a typed array; 64-bit integers become float64. */
function toVoxels(value: unknown): VoxelArray | null {
  if (
    value instanceof Uint8Array || value instanceof Int8Array || value instanceof Uint16Array ||
    value instanceof Int16Array || value instanceof Uint32Array || value instanceof Int32Array ||
    value instanceof Float32Array || value instanceof Float64Array
  ) return value;
  if (value instanceof BigInt64Array || value instanceof BigUint64Array) {
    return Float64Array.from(value, (v) => Number(v));
  }
  return null;
}

/** Options of {@linkcode readHdf5Datasets}. */
export interface ReadHdf5Options {
  /** Datasets that may be missing (they are then `null`); the others are required. */
  optional?: string[];
}

/**
 * Read numeric datasets of an HDF5 file by name.
 *
 * @param path The file.
 * @param names Dataset paths inside the file (`image`, `label`, `group/data`).
 * @returns Each dataset as a {@linkcode VolumeData}, `null` for a missing optional one.
 * @throws {UserError} For a missing, corrupt or truncated file, a missing required dataset
 *   (`Cannot read "x.h5": it has no "label" dataset (it has: image)`) or a non-numeric one.
 */
export async function readHdf5Datasets(
  path: string,
  names: string[],
  options: ReadHdf5Options = {},
): Promise<Record<string, VolumeData | null>> {
  const bytes = await readBytes(path);
  if (!hasSignature(bytes)) {
    throw readError(path, `not an HDF5 file (no HDF5 signature in its ${bytes.length} bytes)`);
  }
  const { h5: lib, module } = await h5();
  const memPath = `/missl-${++fileCounter}.h5`;
  module.FS.writeFile(memPath, bytes);
  let file: InstanceType<H5wasm["File"]> | null = null;
  try {
    try {
      file = new lib.File(memPath, "r");
    } catch (error) {
      throw readError(path, `corrupt or truncated HDF5 file (${hdf5Problem(error)})`, error);
    }
    const out: Record<string, VolumeData | null> = {};
    for (const name of names) {
      let entity: ReturnType<typeof file.get>;
      try {
        entity = file.get(name);
      } catch (error) {
        throw readError(path, `cannot open dataset "${name}" (${hdf5Problem(error)})`, error);
      }
      if (entity === null) {
        if (options.optional?.includes(name)) {
          out[name] = null;
          continue;
        }
        let keys: string[] = [];
        try {
          keys = file.keys();
        } catch { /* the listing is only for the message */ }
        throw readError(
          path,
          `it has no "${name}" dataset (it has: ${keys.join(", ") || "nothing"})`,
        );
      }
      if (!(entity instanceof lib.Dataset)) throw readError(path, `"${name}" is not a dataset`);
      let value: unknown;
      let shape: number[];
      try {
        shape = entity.shape ?? [];
        value = entity.value;
      } catch (error) {
        throw readError(path, `cannot read dataset "${name}" (${hdf5Problem(error)})`, error);
      }
      const data = toVoxels(value);
      if (!data) {
        throw readError(
          path,
          `dataset "${name}" is not numeric (dtype ${JSON.stringify(entity.dtype)})`,
        );
      }
      if (shape.length === 0 || voxelCount(shape) !== data.length) {
        throw readError(
          path,
          `dataset "${name}" has shape [${shape.join(", ")}]; expected an array`,
        );
      }
      let spacing = shape.map(() => 1);
      let spacingKnown = false;
      try {
        if (entity.attrs && "spacing" in entity.attrs) {
          const s = entity.get_attribute("spacing", false);
          const list = ArrayBuffer.isView(s) ? Array.from(s as Float64Array, Number) : [];
          if (list.length === shape.length && list.every((v) => Number.isFinite(v) && v > 0)) {
            spacing = list;
            spacingKnown = true;
          }
        }
      } catch { /* no usable spacing attribute */ }
      out[name] = { data, shape, spacing, spacingKnown };
    }
    return out;
  } finally {
    try {
      file?.close();
    } catch { /* already closed */ }
    module.FS.unlink(memPath);
  }
}

/**
 * Read an SSL4MIS-style HDF5 file: its `image` and `label` datasets.
 *
 * @example
 * ```ts
 * import { readSsl4misHdf5, writeHdf5 } from "./hdf5.ts";
 * const path = await Deno.makeTempFile({ suffix: ".h5" });
 * await writeHdf5(path, {
 *   image: { data: new Float32Array(6), shape: [2, 3] },
 *   label: { data: new Uint8Array(6), shape: [2, 3] },
 * });
 * const { image, label } = await readSsl4misHdf5(path); // image.shape [2, 3]
 * await Deno.remove(path);
 * ```
 *
 * @param options `requireLabel: false` to read unlabeled files (then `label` may be `null`).
 * @throws {UserError} For a missing `image`, a missing `label` (unless not required), or a
 *   corrupt file, naming the file.
 */
export async function readSsl4misHdf5(
  path: string,
  options: { requireLabel?: boolean } = {},
): Promise<{ image: VolumeData; label: VolumeData | null }> {
  const optional = options.requireLabel === false ? ["label"] : [];
  const { image, label } = await readHdf5Datasets(path, ["image", "label"], { optional });
  return { image: image!, label };
}

/**
 * Read one dataset of an HDF5 file as a volume.
 *
 * @param options `dataset`: its path in the file. @default "image"
 */
export async function readHdf5(
  path: string,
  options: { dataset?: string } = {},
): Promise<VolumeData> {
  const name = options.dataset ?? "image";
  return (await readHdf5Datasets(path, [name]))[name]!;
}

/** One dataset to write with {@linkcode writeHdf5}. */
export interface Hdf5DatasetInput {
  /** The values, row-major. */
  data: VoxelArray;
  /** The dataset's shape. */
  shape: number[];
  /** Stored as a `spacing` attribute when given. */
  spacing?: number[];
}

/**
 * Write numeric datasets to a new HDF5 file (gzip-compressed, level 4, when they are larger than
 * 1024 values), e.g. an SSL4MIS slice `{ image, label }`.
 *
 * @throws {UserError} For an inconsistent dataset or a file that cannot be written.
 */
export async function writeHdf5(
  path: string,
  datasets: Record<string, Hdf5DatasetInput>,
): Promise<void> {
  const { h5: lib, module } = await h5();
  const memPath = `/missl-${++fileCounter}.h5`;
  let bytes: Uint8Array;
  try {
    const file = new lib.File(memPath, "w");
    try {
      for (const [name, d] of Object.entries(datasets)) {
        if (voxelCount(d.shape) !== d.data.length) {
          throw writeError(
            path,
            `dataset "${name}": shape [${d.shape}] does not match ${d.data.length} values`,
          );
        }
        const big = d.data.length > 1024;
        const ds = file.create_dataset({
          name,
          data: d.data,
          shape: d.shape,
          ...(big ? { chunks: d.shape, compression: 4 } : {}),
        });
        if (d.spacing) {
          ds.create_attribute("spacing", new Float64Array(d.spacing), [d.spacing.length], "<d");
        }
      }
    } finally {
      file.close();
    }
    bytes = module.FS.readFile(memPath);
  } catch (error) {
    if (error instanceof Error && error.name === "UserError") throw error;
    throw writeError(path, hdf5Problem(error), error);
  } finally {
    try {
      module.FS.unlink(memPath);
    } catch { /* never created */ }
  }
  await writeBytes(path, bytes);
}
