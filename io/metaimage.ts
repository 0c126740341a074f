/**
 * MetaImage (ITK MetaIO) reader and writer: a text header (`.mhd`) with the voxels in a
 * separate `.raw` / `.zraw` file, or in the same file after the header (`.mha`,
 * `ElementDataFile = LOCAL`).
 *
 * Supported: `ElementType` MET_UCHAR, MET_CHAR, MET_USHORT, MET_SHORT, MET_UINT, MET_INT,
 * MET_FLOAT, MET_DOUBLE (MET_LONG / MET_ULONG read as 32-bit, as MetaIO does); `DimSize`,
 * `ElementSpacing` (or `ElementSize`), `Offset` (`Origin`, `Position`), `TransformMatrix`
 * (`Rotation`, `Orientation`), `BinaryDataByteOrderMSB` (`ElementByteOrderMSB`),
 * `CompressedData` (zlib or gzip stream), `HeaderSize` (`-1` = the data end the file) and a
 * one-channel `ElementNumberOfChannels`.
 *
 * Axis order: `DimSize` lists `x y z`; `shape` and `spacing` are returned slowest first
 * (`[z, y, x]`), as the voxels lie in `data` (see {@linkcode VolumeData}). The affine maps
 * `(x, y, z)` indices to world millimetres in the header's own (ITK, LPS) frame: column `j` is
 * `ElementSpacing[j]` times row `j` of `TransformMatrix` (MetaIO writes the direction of axis `j`
 * as its `j`-th triple), and the last column is `Offset`.
 *
 * @module
 */
import { deflateSync, unzipSync } from "node:zlib";
import {
  basename,
  bytesOf,
  convertVoxels,
  dirname,
  joinPath,
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

/** MetaIO element types and the voxel type each is read as. */
export const MET_ELEMENT_TYPES = {
  MET_UCHAR: "uint8",
  MET_CHAR: "int8",
  MET_USHORT: "uint16",
  MET_SHORT: "int16",
  MET_UINT: "uint32",
  MET_INT: "int32",
  MET_ULONG: "uint32",
  MET_LONG: "int32",
  MET_FLOAT: "float32",
  MET_DOUBLE: "float64",
} as const satisfies Record<string, VoxelType>;

/** A MetaIO `ElementType` name. */
export type MetElementType = keyof typeof MET_ELEMENT_TYPES;

/** The element type a voxel type is written as. */
const MET_OF_TYPE: Record<VoxelType, MetElementType> = {
  uint8: "MET_UCHAR",
  int8: "MET_CHAR",
  uint16: "MET_USHORT",
  int16: "MET_SHORT",
  uint32: "MET_UINT",
  int32: "MET_INT",
  float32: "MET_FLOAT",
  float64: "MET_DOUBLE",
};

/** A MetaImage volume with the header fields that describe its storage. */
export interface MetaImageVolume extends VolumeData {
  /** The `ElementType` of the file. */
  elementType: MetElementType;
  /** Every header field, as text, keys as written. */
  header: Record<string, string>;
  /** The 4 x 4 voxel-to-world matrix (see the module doc for its convention). */
  affine: number[][];
}

/** Options of {@linkcode writeMetaImage}. */
export interface MetaImageWriteOptions {
  /** Stored element type. @default the type of `volume.data` */
  elementType?: MetElementType;
  /** zlib-compress the voxels (`CompressedData = True`, a `.zraw` data file). @default {false} */
  compress?: boolean;
  /** Store multi-byte values most significant byte first. @default {false} */
  msb?: boolean;
  /**
   * Where the voxels go: `"LOCAL"` (after the header, in the same file) or a file name beside
   * the header. @default "LOCAL" for `.mha`, else the header's name with `.raw` (`.zraw` when
   * compressed)
   */
  dataFile?: string;
}

const TRUE = /^(true|1|yes)$/i;

function numbers(path: string, key: string, value: string | undefined, count?: number): number[] {
  if (value === undefined) return [];
  const list = value.trim().split(/\s+/).map(Number);
  if (list.some((n) => !Number.isFinite(n)) || (count !== undefined && list.length !== count)) {
    throw readError(
      path,
      `invalid ${key} "${value}"` + (count !== undefined ? ` (expected ${count} numbers)` : ""),
    );
  }
  return list;
}

/** Parse the header text; returns the fields and the byte offset just after `ElementDataFile`. */
function parseHeader(
  bytes: Uint8Array,
  path: string,
): { fields: Map<string, [string, string]>; end: number } {
  const fields = new Map<string, [string, string]>();
  let pos = 0;
  const limit = Math.min(bytes.length, 1 << 20);
  const decoder = new TextDecoder("latin1");
  while (pos < limit) {
    let eol = bytes.indexOf(0x0a, pos);
    const lineEnd = eol < 0 ? bytes.length : eol;
    if (eol < 0) eol = bytes.length - 1;
    const line = decoder.decode(bytes.subarray(pos, lineEnd)).replace(/\r$/, "");
    pos = eol + 1;
    if (line.trim() === "") continue;
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) {
      throw readError(
        path,
        `not a MetaImage header (line "${line.slice(0, 40)}" is not "Key = Value")`,
      );
    }
    fields.set(m[1].toLowerCase(), [m[1], m[2]]);
    if (m[1].toLowerCase() === "elementdatafile") return { fields, end: pos };
  }
  throw readError(path, "not a MetaImage header, or truncated: no ElementDataFile line");
}

/** Where {@linkcode parseMetaImage} gets what is not in the header's bytes. */
export interface MetaImageSource {
  /**
   * The bytes of the data file the header names (`ElementDataFile`, as written in the header);
   * not called for a `.mha` (`LOCAL`).
   */
  dataFile(name: string): Promise<Uint8Array>;
  /**
   * Inflate a zlib or gzip stream (`CompressedData = True`). @default node:zlib's `unzipSync`
   * (the page passes the browser's `DecompressionStream`)
   */
  inflate?(bytes: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * Read a MetaImage volume (`.mhd` with its `.raw` / `.zraw`, or a `.mha`) from the file system:
 * {@linkcode parseMetaImage} with the data file read beside the header.
 *
 * @example
 * ```ts
 * import { readMetaImage, writeMetaImage } from "./metaimage.ts";
 * const dir = await Deno.makeTempDir();
 * await writeMetaImage(`${dir}/case.mhd`, {
 *   data: new Int16Array(24), shape: [2, 3, 4], spacing: [3.6, 0.6, 0.6],
 * }, { compress: true });
 * const v = await readMetaImage(`${dir}/case.mhd`); // data from case.zraw
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @throws {UserError} For a missing, corrupt, truncated or unsupported file, naming it.
 */
export async function readMetaImage(path: string): Promise<MetaImageVolume> {
  return await parseMetaImage(await readBytes(path), path, {
    dataFile: (name) => readBytes(joinPath(dirname(path), name)),
  });
}

/**
 * Parse a MetaImage volume from its header file's bytes (a `.mha` holds the voxels too); a
 * `.mhd`'s data file comes from `source.dataFile`. Used by {@linkcode readMetaImage} and by the
 * browser page, which has files' bytes and no file system.
 *
 * @throws {UserError} For a corrupt, truncated or unsupported file, naming it.
 */
export async function parseMetaImage(
  headerBytes: Uint8Array,
  path: string,
  source: MetaImageSource,
): Promise<MetaImageVolume> {
  const { fields, end } = parseHeader(headerBytes, path);
  const get = (...keys: string[]) => {
    for (const k of keys) {
      const v = fields.get(k.toLowerCase());
      if (v) return v[1];
    }
    return undefined;
  };
  const objectType = get("ObjectType");
  if (objectType !== undefined && objectType.toLowerCase() !== "image") {
    throw readError(path, `ObjectType is "${objectType}", not Image`);
  }
  const dimSize = numbers(path, "DimSize", get("DimSize"));
  if (dimSize.length === 0) throw readError(path, "the header has no DimSize");
  const ndims = get("NDims") !== undefined ? Number(get("NDims")) : dimSize.length;
  if (!(Number.isInteger(ndims) && ndims >= 1 && ndims === dimSize.length)) {
    throw readError(path, `NDims ${get("NDims")} does not match DimSize "${get("DimSize")}"`);
  }
  if (dimSize.some((n) => !(Number.isInteger(n) && n >= 1))) {
    throw readError(path, `invalid DimSize "${get("DimSize")}"`);
  }
  const elementType = (get("ElementType") ?? "").toUpperCase();
  if (!(elementType in MET_ELEMENT_TYPES)) {
    throw readError(
      path,
      `unsupported ElementType "${get("ElementType") ?? ""}"; supported: ` +
        Object.keys(MET_ELEMENT_TYPES).join(", "),
    );
  }
  const type = MET_ELEMENT_TYPES[elementType as MetElementType];
  const channels = Number(get("ElementNumberOfChannels") ?? 1);
  if (channels !== 1) {
    throw readError(path, `ElementNumberOfChannels = ${channels}: only one channel is supported`);
  }
  const dataFileName = get("ElementDataFile") ?? "";
  const msb = TRUE.test(get("BinaryDataByteOrderMSB", "ElementByteOrderMSB") ?? "False");
  const compressed = TRUE.test(get("CompressedData") ?? "False");
  const binary = get("BinaryData");
  if (binary !== undefined && !TRUE.test(binary)) {
    throw readError(path, "BinaryData = False (ASCII voxels) is not supported");
  }
  const headerSize = Number(get("HeaderSize") ?? 0);

  let dataPath = path;
  let raw: Uint8Array;
  if (dataFileName.toUpperCase() === "LOCAL") {
    raw = headerBytes.subarray(end);
  } else if (/^LIST\b/i.test(dataFileName) || /%/.test(dataFileName.split(/\s+/)[0] ?? "")) {
    throw readError(path, `ElementDataFile "${dataFileName}" (a file list) is not supported`);
  } else if (dataFileName === "") {
    throw readError(path, "ElementDataFile is empty");
  } else {
    dataPath = joinPath(dirname(path), dataFileName);
    raw = await source.dataFile(dataFileName);
  }
  const count = voxelCount(dimSize);
  const width = VOXEL_ARRAYS[type].BYTES_PER_ELEMENT;
  const needed = count * width;
  let bytes: Uint8Array;
  if (compressed) {
    try {
      const stream = headerSize > 0 ? raw.subarray(headerSize) : raw;
      bytes = source.inflate ? await source.inflate(stream) : plainBytes(unzipSync(stream));
    } catch (error) {
      throw readError(dataPath, `corrupt compressed data (${(error as Error).message})`, error);
    }
  } else if (headerSize === -1) {
    bytes = raw.subarray(Math.max(0, raw.length - needed));
  } else {
    bytes = raw.subarray(Math.max(0, headerSize));
  }
  if (bytes.length < needed) {
    throw readError(
      dataPath,
      `truncated voxel data: DimSize ${
        dimSize.join(" x ")
      } ${elementType} needs ${needed} bytes, ` +
        `found ${bytes.length}`,
    );
  }
  const data = typedFromBytes(bytes, 0, count, type, msb);

  const spacingXyz = numbers(path, "ElementSpacing", get("ElementSpacing", "ElementSize"), ndims);
  const spacingKnown = spacingXyz.length === ndims;
  const sp = spacingKnown ? spacingXyz.map(Math.abs) : dimSize.map(() => 1);
  const offset = numbers(path, "Offset", get("Offset", "Origin", "Position"), ndims);
  const matrix = numbers(
    path,
    "TransformMatrix",
    get("TransformMatrix", "Rotation", "Orientation"),
    ndims * ndims,
  );
  const affine = [0, 1, 2].map((r) =>
    [0, 1, 2].map((c) => {
      const scale = sp[c] ?? 1;
      if (r >= ndims || c >= ndims) return r === c ? scale : 0;
      const dir = matrix.length ? matrix[c * ndims + r] : r === c ? 1 : 0;
      return dir * scale;
    }).concat(offset[r] ?? 0)
  );
  affine.push([0, 0, 0, 1]);

  const header: Record<string, string> = {};
  for (const [key, value] of fields.values()) header[key] = value;
  return {
    data,
    shape: [...dimSize].reverse(),
    spacing: [...sp].reverse(),
    spacingKnown,
    affine,
    elementType: elementType as MetElementType,
    header,
  };
}

/**
 * Write a volume as MetaImage: a `.mhd` header with a `.raw` / `.zraw` data file beside it, or
 * a single `.mha` file (`ElementDataFile = LOCAL`). `volume.shape` and `spacing` are slowest
 * axis first (see {@linkcode VolumeData}); `volume.affine`, if any, is written as
 * `TransformMatrix` and `Offset`.
 *
 * @throws {UserError} For an inconsistent volume or a file that cannot be written.
 */
export async function writeMetaImage(
  path: string,
  volume: VolumeData,
  options: MetaImageWriteOptions = {},
): Promise<void> {
  const { shape, spacing } = volume;
  if (shape.length < 1 || shape.some((n) => !(Number.isInteger(n) && n >= 1))) {
    throw writeError(path, `invalid shape [${shape.join(", ")}]`);
  }
  if (voxelCount(shape) !== volume.data.length) {
    throw writeError(
      path,
      `shape [${shape.join(", ")}] does not match ${volume.data.length} voxels`,
    );
  }
  if (spacing.length !== shape.length) {
    throw writeError(path, `spacing has ${spacing.length} values for ${shape.length} axes`);
  }
  const elementType = options.elementType ?? MET_OF_TYPE[voxelTypeOf(volume.data)];
  if (!(elementType in MET_ELEMENT_TYPES)) {
    throw writeError(path, `unknown ElementType "${elementType}"`);
  }
  const stored = convertVoxels(volume.data, MET_ELEMENT_TYPES[elementType]);
  const msb = options.msb ?? false;
  const compress = options.compress ?? false;
  let body = bytesOf(stored, msb);
  if (compress) body = plainBytes(deflateSync(body));
  const isMha = path.toLowerCase().endsWith(".mha");
  const stem = basename(path).replace(/\.(mhd|mha)$/i, "");
  const dataFile = options.dataFile ?? (isMha ? "LOCAL" : `${stem}.${compress ? "zraw" : "raw"}`);
  const n = shape.length;
  const dims = [...shape].reverse();
  const sp = [...spacing].reverse();
  const affine = volume.affine;
  const direction: number[] = [];
  const offset: number[] = [];
  for (let c = 0; c < n; c++) {
    offset.push(affine && c < 3 ? affine[c][3] : 0);
    for (let r = 0; r < n; r++) {
      // Row c of TransformMatrix is the direction of axis c = column c of the affine, unscaled.
      if (affine && r < 3 && c < 3) {
        const norm = Math.hypot(affine[0][c], affine[1][c], affine[2][c]) || 1;
        direction.push(affine[r][c] / norm);
      } else direction.push(r === c ? 1 : 0);
    }
  }
  const lines = [
    "ObjectType = Image",
    `NDims = ${n}`,
    "BinaryData = True",
    `BinaryDataByteOrderMSB = ${msb ? "True" : "False"}`,
    `CompressedData = ${compress ? "True" : "False"}`,
    ...(compress ? [`CompressedDataSize = ${body.length}`] : []),
    `TransformMatrix = ${direction.join(" ")}`,
    `Offset = ${offset.join(" ")}`,
    `ElementSpacing = ${sp.join(" ")}`,
    `DimSize = ${dims.join(" ")}`,
    `ElementType = ${elementType}`,
    `ElementDataFile = ${dataFile}`,
  ];
  const text = new TextEncoder().encode(lines.join("\n") + "\n");
  if (dataFile.toUpperCase() === "LOCAL") {
    const out = new Uint8Array(text.length + body.length);
    out.set(text, 0);
    out.set(body, text.length);
    await writeBytes(path, out);
  } else {
    await writeBytes(joinPath(dirname(path), dataFile), body);
    await writeBytes(path, text);
  }
}
