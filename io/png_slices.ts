/**
 * PNG slice folders, as in the preprocessed PROMISE12 / ACDC layouts of the authors' code:
 * `img/CaseNN_0_SS.png` (intensities) and `gt/CaseNN_0_SS.png` (labels), one PNG per slice. A
 * file name is `<volume>_<slice>.png`: everything before the last `_` names the volume
 * (`Case00_0`), the trailing number orders its slices, and the volume name up to its first `_`
 * is the patient (`Case00`). PNGs are decoded with `fast-png` (8 and 16 bits, grey, grey+alpha,
 * RGB(A) or palette; colour images give their first channel).
 *
 * Axis order: a PNG is `[height, width]`; a slice group is `[slices, height, width]`, slices in
 * ascending slice number. PNG has no spacing: ones, `spacingKnown: false`.
 *
 * @module
 */
import { decodePng, encodePng } from "../deps.ts";
import { basename, joinPath, readBytes, readError, writeBytes, writeError } from "./_util.ts";
import type { VolumeData, VoxelArray } from "./volume_data.ts";

/** Unpack 1-, 2- or 4-bit samples (rows padded to whole bytes) to one byte each. */
function unpackBits(packed: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const perByte = 8 / depth, mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const byte = packed[y * rowBytes + Math.floor(x / perByte)];
      const shift = 8 - depth * (1 + (x % perByte));
      out[y * width + x] = (byte >> shift) & mask;
    }
  }
  return out;
}

/** Decode the bytes of a PNG to a `[height, width]` single-channel image. */
export function decodePngImage(bytes: Uint8Array, path = "<bytes>"): VolumeData {
  let png: ReturnType<typeof decodePng>;
  try {
    png = decodePng(bytes);
  } catch (error) {
    throw readError(path, `corrupt or truncated PNG (${(error as Error).message})`, error);
  }
  const { width, height, channels, depth } = png;
  let src: VoxelArray | Uint8ClampedArray = png.data;
  if (depth < 8 && src.length < width * height * channels) {
    if (channels !== 1) {
      throw readError(path, `unsupported ${depth}-bit PNG with ${channels} channels`);
    }
    src = unpackBits(src as Uint8Array, width, height, depth);
  }
  const n = width * height;
  if (src.length < n * channels) throw readError(path, "truncated PNG pixel data");
  const data = depth === 16 ? new Uint16Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = src[i * channels];
  return { data, shape: [height, width], spacing: [1, 1], spacingKnown: false };
}

/**
 * Read one PNG as a `[height, width]` image (first channel of colour images).
 *
 * @throws {UserError} For a missing, corrupt or truncated file, naming it.
 */
export async function readPng(path: string): Promise<VolumeData> {
  return decodePngImage(await readBytes(path), path);
}

/**
 * Write a 2D `uint8` or `uint16` image (`[height, width]`, or `[1, height, width]`) as a
 * greyscale PNG; other types are rounded and clamped to 0..255.
 */
export async function writePng(path: string, image: VolumeData): Promise<void> {
  const shape = image.shape.length === 3 && image.shape[0] === 1
    ? image.shape.slice(1)
    : image.shape;
  if (shape.length !== 2) throw writeError(path, `a PNG is 2D, not [${image.shape.join(", ")}]`);
  const [height, width] = shape;
  let data: Uint8Array | Uint16Array;
  if (image.data instanceof Uint8Array || image.data instanceof Uint16Array) data = image.data;
  else data = Uint8Array.from(image.data, (v) => Math.min(255, Math.max(0, Math.round(v))));
  const depth = data instanceof Uint16Array ? 16 : 8;
  await writeBytes(path, encodePng({ width, height, data, channels: 1, depth }));
}

/** The slices of one volume of a PNG slice folder, before decoding. */
export interface PngSliceGroup {
  /** Volume id: the file name without `_<slice>.png` (`Case00_0`). */
  id: string;
  /** Patient id: the volume id up to its first `_` (`Case00`), or from `patientOf`. */
  patient: string;
  /** Image files, in slice order. */
  imageFiles: string[];
  /** Label files, parallel to `imageFiles`; `null` when the folder has no label folder. */
  labelFiles: string[] | null;
}

/** Options of {@linkcode listPngSlices}. */
export interface PngSliceOptions {
  /** Sub-folder of the images. @default "img" */
  imageDir?: string;
  /** Sub-folder of the labels. @default "gt" */
  labelDir?: string;
  /** Whether every image slice must have a label slice. @default {true} */
  requireLabels?: boolean;
  /** The patient of a volume id. @default the id up to its first `_` */
  patientOf?: (volumeId: string) => string;
}

const SLICE_NAME = /^(.+)_(\d+)\.png$/i;

async function pngNames(dir: string): Promise<string[] | null> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && !e.name.startsWith(".") && /\.png$/i.test(e.name)) names.push(e.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw readError(dir, (error as Error).message, error);
  }
  return names;
}

/**
 * Group the PNG slices of `<dir>/img` (and `<dir>/gt`) into volumes, without decoding them.
 *
 * @throws {UserError} When the image folder is missing or empty, a name does not end in
 *   `_<number>.png`, or an image slice has no label slice (or the reverse).
 */
export async function listPngSlices(
  dir: string,
  options: PngSliceOptions = {},
): Promise<PngSliceGroup[]> {
  const imageDir = joinPath(dir, options.imageDir ?? "img");
  const labelDir = joinPath(dir, options.labelDir ?? "gt");
  const images = await pngNames(imageDir);
  if (images === null) throw readError(imageDir, "no such folder (expected PNG slices)");
  if (images.length === 0) throw readError(imageDir, "the folder holds no .png slices");
  const labels = await pngNames(labelDir);
  if (labels === null && options.requireLabels !== false) {
    throw readError(labelDir, "no such folder (expected the label PNG slices)");
  }
  if (labels) {
    const imageSet = new Set(images), labelSet = new Set(labels);
    const noLabel = images.filter((n) => !labelSet.has(n));
    const noImage = labels.filter((n) => !imageSet.has(n));
    if (noLabel.length) {
      throw readError(
        joinPath(imageDir, noLabel[0]),
        `has no label slice in ${labelDir}` +
          (noLabel.length > 1 ? ` (nor ${noLabel.length - 1} more)` : ""),
      );
    }
    if (noImage.length) {
      throw readError(joinPath(labelDir, noImage[0]), `has no image slice in ${imageDir}`);
    }
  }
  const groups = new Map<string, { slice: number; name: string }[]>();
  for (const name of images) {
    const m = SLICE_NAME.exec(name);
    if (!m) {
      throw readError(joinPath(imageDir, name), "the name does not end in _<slice number>.png");
    }
    const list = groups.get(m[1]) ?? [];
    list.push({ slice: Number(m[2]), name });
    groups.set(m[1], list);
  }
  const patientOf = options.patientOf ?? ((id: string) => id.split("_")[0]);
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([id, list]) => {
    list.sort((a, b) => a.slice - b.slice);
    return {
      id,
      patient: patientOf(id),
      imageFiles: list.map((s) => joinPath(imageDir, s.name)),
      labelFiles: labels ? list.map((s) => joinPath(labelDir, s.name)) : null,
    };
  });
}

/** Stack 2D images of one size into `[slices, height, width]`. */
async function stack(files: string[]): Promise<VolumeData> {
  const slices: VolumeData[] = [];
  for (const f of files) slices.push(await readPng(f));
  const [h, w] = slices[0].shape;
  const wide = slices.some((s) => s.data instanceof Uint16Array);
  const data = wide ? new Uint16Array(files.length * h * w) : new Uint8Array(files.length * h * w);
  slices.forEach((s, k) => {
    if (s.shape[0] !== h || s.shape[1] !== w) {
      throw readError(
        files[k],
        `is ${s.shape[0]} x ${s.shape[1]}, but ${
          basename(files[0])
        } of the same volume is ${h} x ${w}`,
      );
    }
    data.set(s.data, k * h * w);
  });
  return { data, shape: [files.length, h, w], spacing: [1, 1, 1], spacingKnown: false };
}

/**
 * Decode a slice group into image and label volumes `[slices, height, width]`.
 *
 * @throws {UserError} For a corrupt PNG or slices of different sizes, naming the file.
 */
export async function readPngSliceGroup(
  group: PngSliceGroup,
): Promise<{ image: VolumeData; label: VolumeData | null }> {
  const image = await stack(group.imageFiles);
  const label = group.labelFiles ? await stack(group.labelFiles) : null;
  if (label && label.shape.join() !== image.shape.join()) {
    throw readError(
      group.labelFiles![0],
      `label slices are [${label.shape.slice(1).join(" x ")}], images [${
        image.shape.slice(1).join(" x ")
      }]`,
    );
  }
  return { image, label };
}

/**
 * Read a whole PNG slice folder: every volume, decoded.
 *
 * @example
 * ```ts
 * import { readPngSliceFolder, writePng } from "./png_slices.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/img`);
 * await Deno.mkdir(`${dir}/gt`);
 * for (const s of [0, 1]) {
 *   const px = { data: new Uint8Array(12), shape: [3, 4], spacing: [1, 1] };
 *   await writePng(`${dir}/img/Case00_0_0${s}.png`, px);
 *   await writePng(`${dir}/gt/Case00_0_0${s}.png`, px);
 * }
 * const [volume] = await readPngSliceFolder(dir); // volume.image.shape [2, 3, 4]
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readPngSliceFolder(
  dir: string,
  options: PngSliceOptions = {},
): Promise<(PngSliceGroup & { image: VolumeData; label: VolumeData | null })[]> {
  const out = [];
  for (const group of await listPngSlices(dir, options)) {
    out.push({ ...group, ...(await readPngSliceGroup(group)) });
  }
  return out;
}
