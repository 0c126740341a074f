/**
 * The in-memory form of an image volume read from (or written to) a file, shared by every
 * format reader in `io/`.
 *
 * Axis order: `shape` and `spacing` are **row-major, slowest axis first**, the order in which
 * the voxels lie in `data`: `data[(k * shape[1] + j) * shape[2] + i]` for a 3D volume. NIfTI and
 * MetaImage list their dimensions fastest first (x, y, z), so for them `shape` is `[z, y, x]` =
 * `[dim[3], dim[2], dim[1]]`, the order of SimpleITK's `GetArrayFromImage` and of the SSL4MIS
 * HDF5 files. HDF5 datasets are row-major already: their shape is returned as stored.
 *
 * @module
 */

/** The typed arrays a volume's voxels can be held in. */
export type VoxelArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

/** Names of the voxel types, as in numpy. */
export type VoxelType =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "float32"
  | "float64";

/** An image volume (or a 2D image) as stored in a file. */
export interface VolumeData {
  /** The voxels, row-major: the last axis of `shape` varies fastest. */
  data: VoxelArray;
  /**
   * Size of each axis, slowest first (`[z, y, x]` for NIfTI and MetaImage, whose headers list
   * `x, y, z`; the stored order for HDF5; `[height, width]` for a PNG).
   */
  shape: number[];
  /**
   * Voxel size in mm of each axis, in the order of `shape`. Formats that do not store it (the
   * SSL4MIS HDF5 files, PNG) give ones; {@linkcode VolumeData.spacingKnown} is then `false`.
   */
  spacing: number[];
  /** Whether `spacing` was read from the file. @default {true} */
  spacingKnown?: boolean;
  /**
   * 4 x 4 voxel-to-world matrix, row-major, in the file's own convention: it maps the file's
   * voxel indices `(i, j, k)` **fastest axis first** (`x, y, z`) to world millimetres (RAS for
   * NIfTI; LPS, ITK's convention, for MetaImage). Absent where the format has none.
   */
  affine?: number[][];
}

/** The typed array type of each {@linkcode VoxelType}. */
export const VOXEL_ARRAYS: Record<
  VoxelType,
  {
    new (buffer: ArrayBuffer): VoxelArray;
    new (length: number): VoxelArray;
    BYTES_PER_ELEMENT: number;
  }
> = {
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/** The {@linkcode VoxelType} of a typed array. */
export function voxelTypeOf(data: VoxelArray): VoxelType {
  if (data instanceof Uint8Array) return "uint8";
  if (data instanceof Int8Array) return "int8";
  if (data instanceof Uint16Array) return "uint16";
  if (data instanceof Int16Array) return "int16";
  if (data instanceof Uint32Array) return "uint32";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Float32Array) return "float32";
  return "float64";
}

/** Number of voxels of a shape (1 for an empty shape). */
export function voxelCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
