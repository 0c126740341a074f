/**
 * NIfTI-1 (`.nii`, `.nii.gz`) reader and writer. Headers are parsed with `nifti-reader-js`
 * (NIfTI-2 files are read too); gzip is handled by `node:zlib`, detected from the bytes rather
 * than the file name. The writer is ours: a 348-byte little-endian NIfTI-1 header, an empty
 * extension flag and the voxels at offset 352.
 *
 * Axis order: `shape` and `spacing` are returned slowest axis first (`[z, y, x]` for a 3D
 * file, i.e. `[dim[3], dim[2], dim[1]]`), matching the row-major layout of `data`; the affine
 * maps the file's `(i, j, k) = (x, y, z)` indices to world (RAS) millimetres. See
 * {@linkcode VolumeData}.
 *
 * @module
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { niftiReader } from "../deps.ts";
import {
  bytesOf,
  convertVoxels,
  plainBytes,
  readBytes,
  readError,
  typedFromBytes,
  writeBytes,
  writeError,
} from "./_util.ts";
import {
  type VolumeData,
  VOXEL_ARRAYS,
  voxelCount,
  type VoxelType,
  voxelTypeOf,
} from "./volume_data.ts";

/** NIfTI datatype codes of the voxel types we read and write. */
export const NIFTI_DATATYPES: Record<VoxelType, number> = {
  uint8: 2,
  int16: 4,
  int32: 8,
  float32: 16,
  float64: 64,
  int8: 256,
  uint16: 512,
  uint32: 768,
};

const TYPE_OF_CODE = new Map<number, VoxelType>(
  Object.entries(NIFTI_DATATYPES).map(([k, v]) => [v, k as VoxelType]),
);

/** Names of the datatype codes we do not read, for error messages. */
const UNSUPPORTED_CODES: Record<number, string> = {
  1: "binary",
  32: "complex64",
  128: "rgb24",
  1024: "int64",
  1280: "uint64",
  1536: "float128",
  1792: "complex128",
  2048: "complex256",
  2304: "rgba32",
};

/** A NIfTI volume with the header fields that describe how its voxels were stored. */
export interface NiftiVolume extends VolumeData {
  /** The stored voxel type (before `scl_slope` / `scl_inter` scaling). */
  datatype: VoxelType;
  /** `scl_slope` as stored (0 means no scaling). */
  sclSlope: number;
  /** `scl_inter` as stored. */
  sclInter: number;
  /** `qform_code` (0 = no qform). */
  qformCode: number;
  /** `sform_code` (0 = no sform). */
  sformCode: number;
  /** The affine is this 4 x 4 matrix: sform when `sformCode > 0`, else qform, else pixdim. */
  affine: number[][];
}

/** Options of {@linkcode writeNifti} and {@linkcode encodeNifti}. */
export interface NiftiWriteOptions {
  /** Stored voxel type. @default the type of `volume.data` */
  datatype?: VoxelType;
  /**
   * `scl_slope`: the file stores `(value - sclInter) / sclSlope` (rounded for integer types)
   * and readers multiply back. @default {1}
   */
  sclSlope?: number;
  /** `scl_inter`. @default {0} */
  sclInter?: number;
  /** Gzip the file. @default true for a name ending in `.gz` */
  gzip?: boolean;
  /** Write the affine as a qform (quaternion; only for orthogonal affines). @default {true} */
  qform?: boolean;
  /** Write the affine as an sform (`srow_x/y/z`). @default {true} */
  sform?: boolean;
  /** `descrip`, at most 79 ASCII characters. @default {""} */
  description?: string;
}

/** The 4 x 4 identity-based affine `diag(sx, sy, sz, 1)` of spacings given fastest first. */
function diagonalAffine(sx: number, sy: number, sz: number): number[][] {
  return [[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]];
}

/**
 * The qform affine of nifti1_io's `nifti_quatern_to_mat44`: rotation from the quaternion
 * `(b, c, d)`, scales `pixdim[1..3]` (non-positive ones taken as 1), `qfac = pixdim[0]`.
 */
export function quaternionToAffine(
  quatern: [number, number, number],
  offset: [number, number, number],
  pixdim: [number, number, number],
  qfac: number,
): number[][] {
  let [b, c, d] = quatern;
  let a = 1 - (b * b + c * c + d * d);
  if (a < 1e-7) {
    a = 1 / Math.sqrt(b * b + c * c + d * d);
    b *= a;
    c *= a;
    d *= a;
    a = 0;
  } else {
    a = Math.sqrt(a);
  }
  const xd = pixdim[0] > 0 ? pixdim[0] : 1;
  const yd = pixdim[1] > 0 ? pixdim[1] : 1;
  const zd = (pixdim[2] > 0 ? pixdim[2] : 1) * (qfac < 0 ? -1 : 1);
  const r = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  return [
    [r[0][0] * xd, r[0][1] * yd, r[0][2] * zd, offset[0]],
    [r[1][0] * xd, r[1][1] * yd, r[1][2] * zd, offset[1]],
    [r[2][0] * xd, r[2][1] * yd, r[2][2] * zd, offset[2]],
    [0, 0, 0, 1],
  ];
}

/**
 * The quaternion form of an affine (nifti1_io's `nifti_mat44_to_quatern`), or `null` when its
 * 3 x 3 part is not a rotation times positive scales (then only the sform can hold it).
 */
export function affineToQuaternion(
  affine: number[][],
): { quatern: [number, number, number]; offset: [number, number, number]; qfac: number } | null {
  const cols = [0, 1, 2].map((j) => [affine[0][j], affine[1][j], affine[2][j]]);
  const r = cols.map((col) => {
    const n = Math.hypot(col[0], col[1], col[2]);
    return n > 0 ? col.map((v) => v / n) : null;
  });
  if (r.some((col) => col === null)) return null;
  const [c0, c1, c2] = r as number[][];
  const dot = (u: number[], v: number[]) => u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  if (
    Math.abs(dot(c0, c1)) > 1e-4 || Math.abs(dot(c0, c2)) > 1e-4 || Math.abs(dot(c1, c2)) > 1e-4
  ) {
    return null;
  }
  const det = c0[0] * (c1[1] * c2[2] - c1[2] * c2[1]) - c1[0] * (c0[1] * c2[2] - c0[2] * c2[1]) +
    c2[0] * (c0[1] * c1[2] - c0[2] * c1[1]);
  const qfac = det < 0 ? -1 : 1;
  const k = c2.map((v) => v * qfac);
  // r11 = c0[0] (row 1, column 1), r12 = c1[0], r13 = k[0], ...
  const r11 = c0[0], r12 = c1[0], r13 = k[0];
  const r21 = c0[1], r22 = c1[1], r23 = k[1];
  const r31 = c0[2], r32 = c1[2], r33 = k[2];
  let a = r11 + r22 + r33 + 1, b: number, c: number, d: number;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = 0.25 * (r32 - r23) / a;
    c = 0.25 * (r13 - r31) / a;
    d = 0.25 * (r21 - r12) / a;
  } else {
    const xd = 1 + r11 - (r22 + r33), yd = 1 + r22 - (r11 + r33), zd = 1 + r33 - (r11 + r22);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = 0.25 * (r12 + r21) / b;
      d = 0.25 * (r13 + r31) / b;
      a = 0.25 * (r32 - r23) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = 0.25 * (r12 + r21) / c;
      d = 0.25 * (r23 + r32) / c;
      a = 0.25 * (r13 - r31) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = 0.25 * (r13 + r31) / d;
      c = 0.25 * (r23 + r32) / d;
      a = 0.25 * (r21 - r12) / d;
    }
    if (a < 0) (b = -b, c = -c, d = -d);
  }
  return { quatern: [b, c, d], offset: [affine[0][3], affine[1][3], affine[2][3]], qfac };
}

/** Whether `bytes` start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** An `ArrayBuffer` holding exactly the bytes of `bytes`. */
function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength &&
      bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer
    : new Uint8Array(bytes).buffer;
}

/**
 * Decode the bytes of a `.nii` or `.nii.gz` file.
 *
 * @param bytes The file's bytes, gzipped or not.
 * @param path The file name, for error messages.
 * @throws {UserError} `Cannot read "<path>": <problem>` for a corrupt, truncated or unsupported
 *   file.
 */
export function decodeNifti(bytes: Uint8Array, path = "<bytes>"): NiftiVolume {
  if (isGzip(bytes)) {
    try {
      bytes = plainBytes(gunzipSync(bytes));
    } catch (error) {
      throw readError(path, `corrupt gzip stream (${(error as Error).message})`, error);
    }
  }
  if (bytes.length < 348) {
    throw readError(path, `truncated NIfTI header (${bytes.length} of 348 bytes)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sizeLe = view.getInt32(0, true), sizeBe = view.getInt32(0, false);
  const isV2 = sizeLe === 540 || sizeBe === 540;
  if (!isV2 && sizeLe !== 348 && sizeBe !== 348) {
    throw readError(path, "not a NIfTI file (sizeof_hdr is neither 348 nor 540)");
  }
  const magic = String.fromCharCode(...bytes.subarray(isV2 ? 4 : 344, isV2 ? 7 : 347));
  if (magic === "ni1" || magic === "ni2") {
    throw readError(path, "is a NIfTI .hdr/.img pair header; only single-file .nii is supported");
  }
  if (magic !== "n+1" && magic !== "n+2") {
    throw readError(path, `not a NIfTI file (magic "${magic.replace(/[^\x20-\x7e]/g, "?")}")`);
  }
  if (isV2 && bytes.length < 540) {
    throw readError(path, `truncated NIfTI-2 header (${bytes.length} of 540 bytes)`);
  }
  let header: ReturnType<typeof niftiReader.readHeader>;
  try {
    header = niftiReader.readHeader(ownBuffer(bytes));
  } catch (error) {
    throw readError(path, `corrupt NIfTI header (${(error as Error).message})`, error);
  }
  const le = header.littleEndian;
  const ndim = header.dims[0];
  if (!(ndim >= 1 && ndim <= 7)) throw readError(path, `invalid dim[0] = ${ndim} (expected 1..7)`);
  const dims = header.dims.slice(1, ndim + 1);
  if (dims.some((n) => !(Number.isInteger(n) && n >= 1))) {
    throw readError(path, `invalid dimensions [${dims.join(", ")}]`);
  }
  const code = header.datatypeCode;
  const type = TYPE_OF_CODE.get(code);
  if (!type) {
    const name = UNSUPPORTED_CODES[code];
    throw readError(
      path,
      `unsupported NIfTI datatype ${code}${name ? ` (${name})` : ""}; supported: ` +
        Object.entries(NIFTI_DATATYPES).map(([k, v]) => `${k} (${v})`).join(", "),
    );
  }
  const count = voxelCount(dims);
  const width = VOXEL_ARRAYS[type].BYTES_PER_ELEMENT;
  const offset = Math.round(header.vox_offset);
  if (!(offset >= (isV2 ? 540 : 348))) {
    throw readError(path, `invalid vox_offset ${header.vox_offset}`);
  }
  const needed = offset + count * width;
  if (bytes.length < needed) {
    throw readError(
      path,
      `truncated voxel data: [${dims.join(" x ")}] ${type} needs ${count * width} bytes at ` +
        `offset ${offset}, the file has ${Math.max(0, bytes.length - offset)}`,
    );
  }
  let data = typedFromBytes(bytes, offset, count, type, !le);
  const slope = header.scl_slope, inter = header.scl_inter;
  if (
    Number.isFinite(slope) && slope !== 0 &&
    !(slope === 1 && (inter === 0 || !Number.isFinite(inter)))
  ) {
    const b = Number.isFinite(inter) ? inter : 0;
    const out = type === "float64" || type === "int32" || type === "uint32"
      ? new Float64Array(count)
      : new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = data[i] * slope + b;
    data = out;
  }

  const pix = header.pixDims;
  const spacingXyz = dims.map((_, i) => {
    const s = Math.abs(pix[i + 1]);
    return Number.isFinite(s) && s > 0 ? s : 1;
  });
  let affine: number[][];
  if (isV2) {
    affine = header.affine.map((row) => [...row]);
  } else if (header.sform_code > 0) {
    affine = [0, 1, 2].map((r) =>
      [0, 1, 2, 3].map((c) => view.getFloat32(280 + (r * 4 + c) * 4, le))
    );
    affine.push([0, 0, 0, 1]);
  } else if (header.qform_code > 0) {
    affine = quaternionToAffine(
      [header.quatern_b, header.quatern_c, header.quatern_d],
      [header.qoffset_x, header.qoffset_y, header.qoffset_z],
      [pix[1], pix[2], pix[3]],
      pix[0],
    );
  } else {
    affine = diagonalAffine(spacingXyz[0] ?? 1, spacingXyz[1] ?? 1, spacingXyz[2] ?? 1);
  }
  return {
    data,
    shape: [...dims].reverse(),
    spacing: spacingXyz.reverse(),
    affine,
    datatype: type,
    sclSlope: slope,
    sclInter: inter,
    qformCode: header.qform_code,
    sformCode: header.sform_code,
  };
}

/**
 * Read a NIfTI-1 (or NIfTI-2) `.nii` / `.nii.gz` file.
 *
 * @example
 * ```ts
 * import { readNifti, writeNifti } from "./nifti.ts";
 * const path = await Deno.makeTempFile({ suffix: ".nii.gz" });
 * await writeNifti(path, { data: new Uint8Array(24), shape: [2, 3, 4], spacing: [5, 1, 1] });
 * const v = await readNifti(path); // v.shape [2, 3, 4] (z, y, x), v.spacing [5, 1, 1]
 * await Deno.remove(path);
 * ```
 *
 * @throws {UserError} For a missing, corrupt, truncated or unsupported file, naming it.
 */
export async function readNifti(path: string): Promise<NiftiVolume> {
  return decodeNifti(await readBytes(path), path);
}

function checkVolume(volume: VolumeData, path: string): void {
  const { shape, spacing, data } = volume;
  if (shape.length < 1 || shape.length > 7) {
    throw writeError(path, `NIfTI holds 1 to 7 dimensions, not ${shape.length}`);
  }
  if (shape.some((n) => !(Number.isInteger(n) && n >= 1 && n <= 32767))) {
    throw writeError(path, `invalid shape [${shape.join(", ")}] (each axis 1..32767)`);
  }
  if (voxelCount(shape) !== data.length) {
    throw writeError(path, `shape [${shape.join(", ")}] does not match ${data.length} voxels`);
  }
  if (spacing.length !== shape.length) {
    throw writeError(path, `spacing has ${spacing.length} values for ${shape.length} axes`);
  }
}

/**
 * Encode a volume as an uncompressed NIfTI-1 file (348-byte header, voxels at offset 352).
 * `volume.shape` and `spacing` are slowest axis first (see {@linkcode VolumeData}).
 */
export function encodeNifti(
  volume: VolumeData,
  options: NiftiWriteOptions = {},
  path = "<bytes>",
): Uint8Array {
  checkVolume(volume, path);
  const type = options.datatype ?? voxelTypeOf(volume.data);
  const slope = options.sclSlope ?? 1, inter = options.sclInter ?? 0;
  if (!(Number.isFinite(slope) && slope !== 0) || !Number.isFinite(inter)) {
    throw writeError(path, `invalid scl_slope ${slope} / scl_inter ${inter}`);
  }
  const stored = convertVoxels(volume.data, type, slope, inter);
  const dims = [...volume.shape].reverse();
  const pixdim = [...volume.spacing].reverse();
  const header = new ArrayBuffer(352);
  const v = new DataView(header);
  const u8 = new Uint8Array(header);
  v.setInt32(0, 348, true);
  u8[38] = "r".charCodeAt(0);
  v.setInt16(40, dims.length, true);
  for (let i = 0; i < 7; i++) v.setInt16(42 + 2 * i, dims[i] ?? 1, true);
  v.setInt16(70, NIFTI_DATATYPES[type], true);
  v.setInt16(72, stored.BYTES_PER_ELEMENT * 8, true);
  for (let i = 0; i < 7; i++) v.setFloat32(80 + 4 * i, pixdim[i] ?? 1, true);
  v.setFloat32(108, 352, true);
  v.setFloat32(112, slope, true);
  v.setFloat32(116, inter, true);
  u8[123] = 2 | 8; // mm, seconds
  const description = (options.description ?? "").slice(0, 79);
  for (let i = 0; i < description.length; i++) u8[148 + i] = description.charCodeAt(i) & 0x7f;

  const affine = volume.affine ??
    diagonalAffine(pixdim[0] ?? 1, pixdim[1] ?? 1, pixdim[2] ?? 1);
  if (affine.length < 3 || affine.slice(0, 3).some((row) => row.length < 4)) {
    throw writeError(path, "affine must be a 4 x 4 (or 3 x 4) matrix");
  }
  const q = options.qform === false ? null : affineToQuaternion(affine);
  v.setFloat32(76, q?.qfac ?? 1, true); // pixdim[0] = qfac
  if (q) {
    v.setInt16(252, 1, true); // scanner
    v.setFloat32(256, q.quatern[0], true);
    v.setFloat32(260, q.quatern[1], true);
    v.setFloat32(264, q.quatern[2], true);
    v.setFloat32(268, q.offset[0], true);
    v.setFloat32(272, q.offset[1], true);
    v.setFloat32(276, q.offset[2], true);
  }
  if (options.sform !== false) {
    v.setInt16(254, 2, true); // aligned
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 4; c++) v.setFloat32(280 + (r * 4 + c) * 4, affine[r][c], true);
    }
  }
  u8.set([0x6e, 0x2b, 0x31, 0], 344); // "n+1\0"
  const body = bytesOf(stored);
  const out = new Uint8Array(352 + body.length);
  out.set(u8, 0);
  out.set(body, 352);
  return out;
}

/**
 * Write a volume as NIfTI-1, gzipped when the name ends in `.gz` (or `options.gzip`).
 *
 * @throws {UserError} For an inconsistent volume or a file that cannot be written.
 */
export async function writeNifti(
  path: string,
  volume: VolumeData,
  options: NiftiWriteOptions = {},
): Promise<void> {
  let bytes = encodeNifti(volume, options, path);
  if (options.gzip ?? path.toLowerCase().endsWith(".gz")) bytes = gzipSync(bytes, { level: 6 });
  await writeBytes(path, bytes);
}
