/**
 * Read and write a volume in any supported format, chosen by the file name's extension:
 * NIfTI (`.nii`, `.nii.gz`), MetaImage (`.mhd`, `.mha`), HDF5 (`.h5`, `.hdf5`; one dataset,
 * `image` by default) and PNG (`.png`, 2D).
 *
 * Every reader returns a {@linkcode VolumeData} whose `shape` and `spacing` are **slowest axis
 * first**, the order of the voxels in `data` (`[z, y, x]` for NIfTI and MetaImage, whose
 * headers list `x, y, z`; as stored for HDF5; `[height, width]` for PNG).
 *
 * @module
 */
import { UserError } from "../errors.ts";
import { readHdf5, writeHdf5 } from "./hdf5.ts";
import {
  MET_ELEMENT_TYPES,
  type MetElementType,
  readMetaImage,
  writeMetaImage,
} from "./metaimage.ts";
import { readNifti, writeNifti } from "./nifti.ts";
import { readPng, writePng } from "./png_slices.ts";
import { convertVoxels } from "./_util.ts";
import type { VolumeData, VoxelType } from "./volume_data.ts";

/** The formats {@linkcode readVolume} knows. */
export type VolumeFormat = "nifti" | "metaimage" | "hdf5" | "png";

/** File name endings of each format, longest first. */
export const VOLUME_EXTENSIONS: readonly [string, VolumeFormat][] = [
  [".nii.gz", "nifti"],
  [".nii", "nifti"],
  [".mhd", "metaimage"],
  [".mha", "metaimage"],
  [".hdf5", "hdf5"],
  [".h5", "hdf5"],
  [".png", "png"],
];

/** The format of a file name, or `null` when its extension is not a supported one. */
export function volumeFormat(path: string): VolumeFormat | null {
  const lower = path.toLowerCase();
  return VOLUME_EXTENSIONS.find(([ext]) => lower.endsWith(ext))?.[1] ?? null;
}

/** A file name without its volume extension (`case1.nii.gz` -> `case1`). */
export function stripVolumeExtension(name: string): string {
  const lower = name.toLowerCase();
  const hit = VOLUME_EXTENSIONS.find(([ext]) => lower.endsWith(ext));
  return hit ? name.slice(0, name.length - hit[0].length) : name;
}

function unsupported(path: string, verb: string): UserError {
  return new UserError(
    `Cannot ${verb} "${path}": unknown volume format; supported extensions: ` +
      VOLUME_EXTENSIONS.map(([ext]) => ext).join(", "),
  );
}

/** Options of {@linkcode readVolume}. */
export interface ReadVolumeOptions {
  /** The dataset of an HDF5 file. @default "image" */
  dataset?: string;
}

/**
 * Read a volume, picking the format by extension.
 *
 * @example
 * ```ts
 * import { readVolume, writeVolume } from "./volume.ts";
 * const path = await Deno.makeTempFile({ suffix: ".mha" });
 * await writeVolume(path, { data: new Float32Array(8), shape: [2, 2, 2], spacing: [2, 1, 1] });
 * const v = await readVolume(path); // v.shape [2, 2, 2], v.spacing [2, 1, 1]
 * await Deno.remove(path);
 * ```
 *
 * @throws {UserError} For an unknown extension, or a missing, corrupt or truncated file.
 */
export function readVolume(path: string, options: ReadVolumeOptions = {}): Promise<VolumeData> {
  switch (volumeFormat(path)) {
    case "nifti":
      return readNifti(path);
    case "metaimage":
      return readMetaImage(path);
    case "hdf5":
      return readHdf5(path, options);
    case "png":
      return readPng(path);
    default:
      return Promise.reject(unsupported(path, "read"));
  }
}

/** Options of {@linkcode writeVolume}. */
export interface WriteVolumeOptions {
  /** Stored voxel type (values are rounded and clamped for integer types). @default the data's */
  type?: VoxelType;
  /** Compress: MetaImage `.zraw` / `CompressedData`. NIfTI is gzipped when it ends in `.gz`. */
  compress?: boolean;
  /** The dataset of an HDF5 file. @default "image" */
  dataset?: string;
}

/**
 * Write a volume, picking the format by extension (`.nii.gz` is gzipped; `.mhd` gets a `.raw`
 * or `.zraw` beside it; `.mha` is one file; `.h5` holds one dataset; `.png` must be 2D).
 *
 * @throws {UserError} For an unknown extension, an inconsistent volume or an unwritable file.
 */
export async function writeVolume(
  path: string,
  volume: VolumeData,
  options: WriteVolumeOptions = {},
): Promise<void> {
  const format = volumeFormat(path);
  switch (format) {
    case "nifti":
      return await writeNifti(path, volume, { datatype: options.type });
    case "metaimage": {
      const elementType = options.type
        ? (Object.keys(MET_ELEMENT_TYPES) as MetElementType[]).find((k) =>
          MET_ELEMENT_TYPES[k] === options.type
        )
        : undefined;
      return await writeMetaImage(path, volume, { elementType, compress: options.compress });
    }
    case "hdf5": {
      const data = options.type ? convertVoxels(volume.data, options.type) : volume.data;
      const spacing = volume.spacingKnown === false ? undefined : volume.spacing;
      return await writeHdf5(path, {
        [options.dataset ?? "image"]: { data, shape: volume.shape, spacing },
      });
    }
    case "png": {
      const data = options.type ? convertVoxels(volume.data, options.type) : volume.data;
      return await writePng(path, { ...volume, data });
    }
    default:
      throw unsupported(path, "write");
  }
}
