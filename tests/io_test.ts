import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { UserError } from "../core/errors.ts";
import { readNifti, writeNifti } from "../io/nifti.ts";
import {
  MET_ELEMENT_TYPES,
  type MetElementType,
  readMetaImage,
  writeMetaImage,
} from "../io/metaimage.ts";
import { readHdf5, readSsl4misHdf5, writeHdf5 } from "../io/hdf5.ts";
import { listPngSlices, readPng, readPngSliceFolder, writePng } from "../io/png_slices.ts";
import { readVolume, stripVolumeExtension, volumeFormat, writeVolume } from "../io/volume.ts";
import { type VolumeData, VOXEL_ARRAYS, type VoxelType } from "../io/volume_data.ts";
import { moduleTempDir } from "./_helpers.ts";

const SHARED = new URL("../../shared/data/", import.meta.url).pathname;
const HIPPOCAMPUS = Deno.env.get("HIPPOCAMPUS_ROOT") ?? `${SHARED}hippocampus`;
const hasHippocampus = await Deno.stat(`${HIPPOCAMPUS}/images`).then(() => true, () => false);
if (!hasHippocampus) {
  console.log(`io_test: skipping the real NIfTI test: no data at ${HIPPOCAMPUS}`);
}

const ACDC = Deno.env.get("ACDC_ROOT") ?? `${SHARED}acdc`;
const hasAcdc = await Deno.stat(`${ACDC}/data`).then(() => true, () => false);
if (!hasAcdc) console.log(`io_test: skipping the real HDF5 test: no ACDC data at ${ACDC}`);

const tmp = moduleTempDir("missl-io-test-");
let fileCount = 0;
const tmpPath = (name: string) => `${tmp}/${++fileCount}-${name}`;

/** Values that use each type's range: negatives for signed types, fractions for floats. */
function sample(type: VoxelType, n: number): VolumeData["data"] {
  const out = new VOXEL_ARRAYS[type](n);
  const signed = type.startsWith("int") || type.startsWith("float");
  const big = { uint8: 250, int8: 120, uint16: 60000, int16: 30000, uint32: 4e9, int32: 2e9 };
  for (let i = 0; i < n; i++) {
    if (type === "float32" || type === "float64") out[i] = (i - n / 2) * 0.375 + 1e-3;
    else {
      const top = big[type as keyof typeof big];
      out[i] = Math.round((signed ? -top : 0) + ((i * 7919) % n) * (top * (signed ? 2 : 1) / n));
    }
  }
  return out;
}

/** A rotation about z by 30 degrees with a flip of y, scaled by the spacing, and a shift. */
function testAffine(spacingXyz: [number, number, number]): number[][] {
  const c = Math.cos(Math.PI / 6), s = Math.sin(Math.PI / 6);
  const [sx, sy, sz] = spacingXyz;
  return [
    [c * sx, s * sy, 0, -12.5],
    [s * sx, -c * sy, 0, 40],
    [0, 0, sz, 7.25],
    [0, 0, 0, 1],
  ];
}

function assertAffineClose(actual: number[][] | undefined, expected: number[][], tol = 1e-4): void {
  assert.ok(actual, "no affine");
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      assert.ok(
        Math.abs(actual[r][c] - expected[r][c]) <= tol * (1 + Math.abs(expected[r][c])),
        `affine[${r}][${c}] = ${actual[r][c]}, expected ${expected[r][c]}`,
      );
    }
  }
}

async function assertUserError(
  promise: Promise<unknown>,
  ...patterns: (RegExp | string)[]
): Promise<void> {
  await assert.rejects(promise, (error: Error) => {
    assert.ok(
      error instanceof UserError,
      `expected a UserError, got ${error.name}: ${error.message}`,
    );
    for (const p of patterns) {
      if (typeof p === "string") {
        assert.ok(error.message.includes(p), `"${error.message}" lacks "${p}"`);
      } else assert.match(error.message, p);
    }
    return true;
  });
}

const TYPES: VoxelType[] = [
  "uint8",
  "int8",
  "uint16",
  "int16",
  "uint32",
  "int32",
  "float32",
  "float64",
];

Deno.test("NIfTI round trips every datatype, .nii and .nii.gz, with spacing and affine", async () => {
  const shape = [3, 4, 5]; // z, y, x
  const spacing = [2.5, 0.75, 0.625];
  const affine = testAffine([0.625, 0.75, 2.5]);
  for (const type of TYPES) {
    for (const ext of [".nii", ".nii.gz"]) {
      const path = tmpPath(`${type}${ext}`);
      const data = sample(type, 60);
      await writeNifti(path, { data, shape, spacing, affine });
      const back = await readNifti(path);
      assert.equal(back.datatype, type);
      assert.equal(back.data.constructor, data.constructor, `${type}${ext}`);
      assert.deepEqual(back.data, data, `${type}${ext}`);
      assert.deepEqual(back.shape, shape);
      assert.deepEqual(back.spacing, spacing);
      assertAffineClose(back.affine, affine);
      assert.equal(back.sformCode, 2);
      assert.equal(back.qformCode, 1);
    }
  }
});

Deno.test("a NIfTI file lists its dimensions x, y, z fastest first and the reader returns z, y, x", async () => {
  const path = tmpPath("order.nii");
  // 2 slices (z) of 3 rows (y) of 4 columns (x); value = 100 z + 10 y + x.
  const data = new Uint8Array(24).map((_, i) =>
    100 * Math.floor(i / 12) + 10 * Math.floor((i % 12) / 4) + (i % 4)
  );
  await writeNifti(path, { data, shape: [2, 3, 4], spacing: [5, 2, 1] });
  const bytes = await Deno.readFile(path);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getInt32(0, true), 348);
  assert.equal(view.getFloat32(108, true), 352, "vox_offset");
  assert.deepEqual([0, 1, 2, 3].map((i) => view.getInt16(40 + 2 * i, true)), [3, 4, 3, 2]);
  assert.deepEqual([1, 2, 3].map((i) => view.getFloat32(76 + 4 * i, true)), [1, 2, 5]);
  assert.equal(new TextDecoder().decode(bytes.subarray(344, 347)), "n+1");
  // Voxel (x=1, y=2, z=1) is the 1 + 4 * (2 + 3 * 1) = 21st value.
  assert.equal(bytes[352 + 21], 121);
  const back = await readNifti(path);
  assert.deepEqual(back.shape, [2, 3, 4]);
  assert.deepEqual(back.spacing, [5, 2, 1]);
  assert.equal(back.data[(1 * 3 + 2) * 4 + 1], 121);
});

Deno.test("NIfTI scl_slope and scl_inter are applied on read", async () => {
  for (const ext of [".nii", ".nii.gz"]) {
    const path = tmpPath(`scaled${ext}`);
    const values = Float32Array.from({ length: 24 }, (_, i) => 10 + 0.5 * (i - 7));
    await writeNifti(path, { data: values, shape: [2, 3, 4], spacing: [1, 1, 1] }, {
      datatype: "int16",
      sclSlope: 0.5,
      sclInter: 10,
    });
    const bytes = await Deno.readFile(path);
    const raw = ext === ".nii" ? bytes : null;
    if (raw) {
      const view = new DataView(raw.buffer);
      assert.equal(view.getFloat32(112, true), 0.5);
      assert.equal(view.getFloat32(116, true), 10);
      assert.equal(view.getInt16(352, true), -7, "stored (10 + 0.5 * -7 - 10) / 0.5");
    }
    const back = await readNifti(path);
    assert.equal(back.datatype, "int16");
    assert.equal(back.sclSlope, 0.5);
    assert.ok(back.data instanceof Float32Array);
    assert.deepEqual(back.data, values);
  }
});

Deno.test("a NIfTI qform alone gives the affine, flips included", async () => {
  const path = tmpPath("qform.nii");
  const affine = testAffine([0.625, 0.75, 2.5]); // det < 0: qfac = -1
  await writeNifti(path, {
    data: new Uint8Array(60),
    shape: [3, 4, 5],
    spacing: [2.5, 0.75, 0.625],
    affine,
  }, {
    sform: false,
  });
  const back = await readNifti(path);
  assert.equal(back.sformCode, 0);
  assert.equal(back.qformCode, 1);
  assertAffineClose(back.affine, affine);
  const rotated = [[0, -2, 0, 10], [0, 0, 3, -5], [-1.5, 0, 0, 7], [0, 0, 0, 1]];
  await writeNifti(path, {
    data: new Int16Array(6),
    shape: [1, 2, 3],
    spacing: [3, 2, 1.5],
    affine: rotated,
  }, {
    sform: false,
  });
  assertAffineClose((await readNifti(path)).affine, rotated);
});

Deno.test("a big-endian NIfTI file is read like its little-endian twin", async () => {
  const path = tmpPath("le.nii");
  const data = Int16Array.from({ length: 60 }, (_, i) => 300 * i - 9001); // odd: (v + 1) / 2 is exact
  const affine = testAffine([0.625, 0.75, 2.5]);
  await writeNifti(path, { data, shape: [3, 4, 5], spacing: [2.5, 0.75, 0.625], affine }, {
    sclSlope: 2,
    sclInter: -1,
  });
  const le = await Deno.readFile(path);
  const be = le.slice();
  const swap = (at: number, width: number) => be.subarray(at, at + width).reverse();
  swap(0, 4);
  for (let at = 40; at < 56; at += 2) swap(at, 2);
  for (const at of [68, 70, 72, 74, 120, 252, 254]) swap(at, 2);
  for (let at = 56; at < 68; at += 4) swap(at, 4);
  for (let at = 76; at < 120; at += 4) swap(at, 4);
  for (let at = 124; at < 148; at += 4) swap(at, 4);
  for (let at = 256; at < 328; at += 4) swap(at, 4);
  for (let at = 352; at < be.length; at += 2) swap(at, 2);
  const bePath = tmpPath("be.nii");
  await Deno.writeFile(bePath, be);
  const a = await readNifti(path), b = await readNifti(bePath);
  assert.deepEqual(b.data, a.data);
  assert.deepEqual(b.data, Float32Array.from(data));
  assert.deepEqual(b.shape, a.shape);
  assert.deepEqual(b.spacing, a.spacing);
  assertAffineClose(b.affine, affine);
});

Deno.test("NIfTI 2D and 4D shapes round trip", async () => {
  for (const shape of [[6, 7], [2, 1, 3, 4]]) {
    const path = tmpPath("nd.nii.gz");
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, i) => i / 3);
    await writeNifti(path, { data, shape, spacing: shape.map((_, i) => i + 1) });
    const back = await readNifti(path);
    assert.deepEqual(back.shape, shape);
    assert.deepEqual(back.spacing, shape.map((_, i) => i + 1));
    assert.deepEqual(back.data, data);
  }
});

Deno.test({
  name: "the NIfTI reader reads the shared MSD hippocampus volumes",
  ignore: !hasHippocampus,
  fn: async () => {
    const image = await readNifti(`${HIPPOCAMPUS}/images/hippocampus_001.nii.gz`);
    const label = await readNifti(`${HIPPOCAMPUS}/labels/hippocampus_001.nii.gz`);
    assert.equal(image.shape.length, 3);
    assert.deepEqual(label.shape, image.shape);
    assert.deepEqual(image.spacing, [1, 1, 1]);
    assert.equal(image.data.length, image.shape[0] * image.shape[1] * image.shape[2]);
    assert.deepEqual([...new Set(label.data)].sort(), [0, 1, 2]);
  },
});

Deno.test("corrupt and truncated NIfTI files give one UserError naming the file", async () => {
  const path = tmpPath("good.nii");
  await writeNifti(path, {
    data: new Float32Array(1000).fill(1),
    shape: [10, 10, 10],
    spacing: [1, 1, 1],
  });
  const bytes = await Deno.readFile(path);
  const cut = tmpPath("cut.nii");
  await Deno.writeFile(cut, bytes.subarray(0, 352 + 1000));
  await assertUserError(readNifti(cut), `Cannot read "${cut}"`, "truncated voxel data");
  const short = tmpPath("short.nii");
  await Deno.writeFile(short, bytes.subarray(0, 200));
  await assertUserError(readNifti(short), short, "truncated NIfTI header");
  const gz = tmpPath("cut.nii.gz");
  const zipped = gzipSync(bytes);
  await Deno.writeFile(gz, zipped.subarray(0, zipped.length >> 1));
  await assertUserError(readNifti(gz), gz, "corrupt gzip stream");
  const magic = tmpPath("magic.nii");
  const bad = bytes.slice();
  bad.set([0x78, 0x78, 0x78], 344);
  await Deno.writeFile(magic, bad);
  await assertUserError(readNifti(magic), magic, "not a NIfTI file");
  const garbage = tmpPath("garbage.nii");
  await Deno.writeFile(garbage, new Uint8Array(400).fill(7));
  await assertUserError(readNifti(garbage), garbage, "not a NIfTI file");
  const int64 = tmpPath("int64.nii");
  const typed = bytes.slice();
  new DataView(typed.buffer).setInt16(70, 1024, true);
  await Deno.writeFile(int64, typed);
  await assertUserError(readNifti(int64), int64, "unsupported NIfTI datatype 1024 (int64)");
  const missing = `${tmp}/missing.nii.gz`;
  await assertUserError(readNifti(missing), `Cannot read "${missing}": no such file`);
});

const MET_TYPES = Object.keys(MET_ELEMENT_TYPES).filter((t) => !/LONG/.test(t)) as MetElementType[];

Deno.test("MetaImage round trips every ElementType as .raw, .zraw, LOCAL and MSB", async () => {
  const shape = [3, 4, 5];
  const spacing = [3.6, 0.625, 0.5];
  const affine = testAffine([0.5, 0.625, 3.6]);
  for (const elementType of MET_TYPES) {
    const type = MET_ELEMENT_TYPES[elementType];
    const data = sample(type, 60);
    const variants = [
      { name: "a.mhd", options: {}, dataFile: "a.raw" },
      { name: "b.mhd", options: { compress: true }, dataFile: "b.zraw" },
      { name: "c.mha", options: {}, dataFile: "LOCAL" },
      { name: "d.mhd", options: { msb: true }, dataFile: "d.raw" },
      { name: "e.mha", options: { msb: true, compress: true }, dataFile: "LOCAL" },
    ];
    for (const v of variants) {
      const dir = tmpPath(elementType);
      await Deno.mkdir(dir);
      const path = `${dir}/${v.name}`;
      await writeMetaImage(path, { data, shape, spacing, affine }, v.options);
      const text = new TextDecoder("latin1").decode(await Deno.readFile(path));
      assert.match(text, new RegExp(`^ElementDataFile = ${v.dataFile}$`, "m"));
      assert.match(text, new RegExp(`^ElementType = ${elementType}$`, "m"));
      assert.match(text, /^DimSize = 5 4 3$/m);
      assert.match(text, /^ElementSpacing = 0.5 0.625 3.6$/m);
      const back = await readMetaImage(path);
      const label = `${elementType} ${v.name}`;
      assert.equal(back.elementType, elementType, label);
      assert.equal(back.data.constructor, data.constructor, label);
      assert.deepEqual(back.data, data, label);
      assert.deepEqual(back.shape, shape, label);
      assert.deepEqual(back.spacing, spacing, label);
      assertAffineClose(back.affine, affine);
    }
  }
});

Deno.test("MetaImage MSB data are big-endian on disk", async () => {
  const dir = tmpPath("msb");
  await Deno.mkdir(dir);
  await writeMetaImage(`${dir}/x.mhd`, {
    data: new Int16Array([0x0102, -2]),
    shape: [2],
    spacing: [1],
  }, {
    msb: true,
  });
  assert.deepEqual([...await Deno.readFile(`${dir}/x.raw`)], [1, 2, 0xff, 0xfe]);
  assert.match(await Deno.readTextFile(`${dir}/x.mhd`), /^BinaryDataByteOrderMSB = True$/m);
});

Deno.test("a hand-written PROMISE12-style MetaImage header is read", async () => {
  const dir = tmpPath("promise");
  await Deno.mkdir(dir);
  await Deno.writeTextFile(
    `${dir}/Case00.mhd`,
    [
      "ObjectType = Image",
      "NDims = 3",
      "BinaryData = True",
      "BinaryDataByteOrderMSB = False",
      "CompressedData = False",
      "TransformMatrix = 1 0 0 0 1 0 0 0 1",
      "Offset = -10 -20 30",
      "CenterOfRotation = 0 0 0",
      "AnatomicalOrientation = RAI",
      "ElementSpacing = 0.625 0.625 3.6",
      "DimSize = 3 2 2",
      "ElementType = MET_USHORT",
      "ElementDataFile = Case00.raw",
    ].join("\r\n") + "\r\n",
  );
  const values = Uint16Array.from({ length: 12 }, (_, i) => 1000 + i);
  await Deno.writeFile(`${dir}/Case00.raw`, new Uint8Array(values.buffer));
  const v = await readVolume(`${dir}/Case00.mhd`);
  assert.deepEqual(v.shape, [2, 2, 3]);
  assert.deepEqual(v.spacing, [3.6, 0.625, 0.625]);
  assert.deepEqual(v.data, values);
  assert.deepEqual(v.affine, [[0.625, 0, 0, -10], [0, 0.625, 0, -20], [0, 0, 3.6, 30], [
    0,
    0,
    0,
    1,
  ]]);
  // HeaderSize = -1: the voxels are the last bytes of the data file.
  const padded = new Uint8Array(7 + 24);
  padded.set(new Uint8Array(values.buffer), 7);
  await Deno.writeFile(`${dir}/Case01.raw`, padded);
  await Deno.writeTextFile(
    `${dir}/Case01.mhd`,
    "NDims = 3\nDimSize = 3 2 2\nHeaderSize = -1\nElementType = MET_USHORT\nElementDataFile = Case01.raw\n",
  );
  assert.deepEqual((await readVolume(`${dir}/Case01.mhd`)).data, values);
});

Deno.test("corrupt and truncated MetaImage files give one UserError naming the file", async () => {
  const dir = tmpPath("bad-mhd");
  await Deno.mkdir(dir);
  const volume = {
    data: new Float32Array(1000).fill(0.5),
    shape: [10, 10, 10],
    spacing: [1, 1, 1],
  };
  await writeMetaImage(`${dir}/a.mhd`, volume);
  const raw = await Deno.readFile(`${dir}/a.raw`);
  await Deno.writeFile(`${dir}/a.raw`, raw.subarray(0, 100));
  await assertUserError(readMetaImage(`${dir}/a.mhd`), `"${dir}/a.raw"`, "truncated voxel data");
  await writeMetaImage(`${dir}/z.mhd`, volume, { compress: true });
  const z = await Deno.readFile(`${dir}/z.zraw`);
  await Deno.writeFile(`${dir}/z.zraw`, z.subarray(0, z.length >> 1));
  await assertUserError(
    readMetaImage(`${dir}/z.mhd`),
    `"${dir}/z.zraw"`,
    "corrupt compressed data",
  );
  await writeMetaImage(`${dir}/m.mhd`, volume);
  await Deno.remove(`${dir}/m.raw`);
  await assertUserError(readMetaImage(`${dir}/m.mhd`), `Cannot read "${dir}/m.raw": no such file`);
  await Deno.writeTextFile(
    `${dir}/t.mhd`,
    "NDims = 3\nDimSize = 2 2 2\nElementType = MET_LONG_LONG\nElementDataFile = LOCAL\n",
  );
  await assertUserError(
    readMetaImage(`${dir}/t.mhd`),
    `${dir}/t.mhd`,
    'unsupported ElementType "MET_LONG_LONG"',
  );
  await Deno.writeTextFile(`${dir}/n.mhd`, "NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n");
  await assertUserError(readMetaImage(`${dir}/n.mhd`), `${dir}/n.mhd`, "no ElementDataFile");
  await Deno.writeFile(`${dir}/g.mha`, new Uint8Array(64).fill(0x01));
  await assertUserError(readMetaImage(`${dir}/g.mha`), `${dir}/g.mha`, "not a MetaImage header");
  await Deno.writeTextFile(
    `${dir}/d.mhd`,
    "NDims = 3\nDimSize = 2 x 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n",
  );
  await assertUserError(readMetaImage(`${dir}/d.mhd`), `${dir}/d.mhd`, "invalid DimSize");
});

Deno.test("HDF5 SSL4MIS files round trip, and a spacing attribute is read back", async () => {
  const path = tmpPath("slice.h5");
  const image = Float32Array.from({ length: 40 * 50 }, (_, i) => (i % 97) / 96);
  const label = Uint8Array.from({ length: 40 * 50 }, (_, i) => i % 4);
  await writeHdf5(path, {
    image: { data: image, shape: [40, 50] },
    label: { data: label, shape: [40, 50] },
  });
  const back = await readSsl4misHdf5(path);
  assert.deepEqual(back.image.shape, [40, 50]);
  assert.deepEqual(back.image.data, image);
  assert.deepEqual(back.label?.data, label);
  assert.equal(back.image.spacingKnown, false);
  const withSpacing = tmpPath("spacing.h5");
  await writeVolume(withSpacing, {
    data: new Int16Array(24),
    shape: [2, 3, 4],
    spacing: [5, 1.5, 1.25],
  });
  const v = await readHdf5(withSpacing);
  assert.deepEqual(v.spacing, [5, 1.5, 1.25]);
  assert.equal(v.spacingKnown, true);
  assert.ok(v.data instanceof Int16Array);
});

Deno.test({
  name: "the shared SSL4MIS ACDC files hold a float32 image in [0, 1] and a uint8 label",
  ignore: !hasAcdc,
  fn: async () => {
    const name = [...Deno.readDirSync(`${ACDC}/data`)].map((e) => e.name).find((n) =>
      /_frame\d+\.h5$/.test(n)
    )!;
    const { image, label } = await readSsl4misHdf5(`${ACDC}/data/${name}`);
    assert.equal(image.shape.length, 3);
    assert.ok(image.data instanceof Float32Array);
    assert.ok(label!.data instanceof Uint8Array);
    assert.deepEqual(label!.shape, image.shape);
    assert.ok(image.data.every((v) => v >= 0 && v <= 1));
    assert.ok(label!.data.every((v) => v <= 3));
  },
});

Deno.test("an HDF5 file without label, truncated, or not HDF5 gives one UserError naming it", async () => {
  const noLabel = tmpPath("nolabel.h5");
  await writeHdf5(noLabel, { image: { data: new Float32Array(6), shape: [2, 3] } });
  await assertUserError(
    readSsl4misHdf5(noLabel),
    `Cannot read "${noLabel}": it has no "label" dataset (it has: image)`,
  );
  assert.equal((await readSsl4misHdf5(noLabel, { requireLabel: false })).label, null);
  const good = tmpPath("good.h5");
  await writeHdf5(good, { image: { data: new Float32Array(4096), shape: [64, 64] } });
  const bytes = await Deno.readFile(good);
  const cut = tmpPath("cut.h5");
  await Deno.writeFile(cut, bytes.subarray(0, bytes.length - 300));
  await assertUserError(
    readSsl4misHdf5(cut),
    cut,
    "corrupt or truncated HDF5 file",
    "truncated file",
  );
  const text = tmpPath("text.h5");
  await Deno.writeTextFile(text, "not hdf5 at all");
  await assertUserError(readHdf5(text), text, "not an HDF5 file");
  await assertUserError(readHdf5(`${tmp}/none.h5`), "no such file");
});

Deno.test("PNG slices round trip in 8 and 16 bits and group into volumes by case", async () => {
  const dir = tmpPath("png");
  await Deno.mkdir(`${dir}/img`, { recursive: true });
  await Deno.mkdir(`${dir}/gt`, { recursive: true });
  const slice = (k: number) => Uint8Array.from({ length: 12 }, (_, i) => k * 20 + i);
  for (const k of [0, 2, 10]) {
    await writePng(`${dir}/img/Case01_0_${k}.png`, {
      data: slice(k),
      shape: [3, 4],
      spacing: [1, 1],
    });
    await writePng(`${dir}/gt/Case01_0_${k}.png`, {
      data: new Uint8Array(12).fill(255),
      shape: [3, 4],
      spacing: [1, 1],
    });
  }
  await writePng(`${dir}/img/Case00_0_00.png`, { data: slice(1), shape: [3, 4], spacing: [1, 1] });
  await writePng(`${dir}/gt/Case00_0_00.png`, { data: slice(1), shape: [3, 4], spacing: [1, 1] });
  const groups = await listPngSlices(dir);
  assert.deepEqual(groups.map((g) => [g.id, g.patient, g.imageFiles.length]), [
    ["Case00_0", "Case00", 1],
    ["Case01_0", "Case01", 3],
  ]);
  assert.deepEqual(groups[1].imageFiles.map((f) => f.split("/").pop()), [
    "Case01_0_0.png",
    "Case01_0_2.png",
    "Case01_0_10.png",
  ]);
  const volumes = await readPngSliceFolder(dir);
  assert.deepEqual(volumes[1].image.shape, [3, 3, 4]);
  assert.deepEqual(volumes[1].image.data.subarray(12, 24), slice(2));
  assert.deepEqual(volumes[1].image.data.subarray(24), slice(10));
  assert.equal(volumes[1].label!.data[0], 255);
  const wide = Uint16Array.from({ length: 6 }, (_, i) => 1000 * i + 7);
  await writePng(`${dir}/wide.png`, { data: wide, shape: [2, 3], spacing: [1, 1] });
  const back = await readPng(`${dir}/wide.png`);
  assert.deepEqual(back.data, wide);
  assert.deepEqual(back.shape, [2, 3]);
});

Deno.test("a corrupt PNG or an image slice without its label gives a UserError naming the file", async () => {
  const dir = tmpPath("badpng");
  await Deno.mkdir(`${dir}/img`, { recursive: true });
  await Deno.mkdir(`${dir}/gt`, { recursive: true });
  await writePng(`${dir}/img/Case00_0_1.png`, {
    data: new Uint8Array(4),
    shape: [2, 2],
    spacing: [1, 1],
  });
  await assertUserError(
    listPngSlices(dir),
    `Cannot read "${dir}/img/Case00_0_1.png": has no label slice`,
  );
  const bytes = await Deno.readFile(`${dir}/img/Case00_0_1.png`);
  await Deno.writeFile(`${dir}/cut.png`, bytes.subarray(0, 30));
  await assertUserError(readPng(`${dir}/cut.png`), `${dir}/cut.png`, "corrupt or truncated PNG");
  await assertUserError(listPngSlices(`${dir}/nothing`), "no such folder");
});

Deno.test("readVolume and writeVolume pick the format by extension", async () => {
  const volume = {
    data: Float32Array.from({ length: 24 }, (_, i) => i / 4),
    shape: [2, 3, 4],
    spacing: [3, 2, 1],
  };
  assert.equal(volumeFormat("a/b.NII.GZ"), "nifti");
  assert.equal(volumeFormat("x.mha"), "metaimage");
  assert.equal(volumeFormat("x.hdf5"), "hdf5");
  assert.equal(volumeFormat("x.raw"), null);
  assert.equal(stripVolumeExtension("case_1.nii.gz"), "case_1");
  for (const ext of [".nii", ".nii.gz", ".mhd", ".mha", ".h5"]) {
    const path = tmpPath(`v${ext}`);
    await writeVolume(path, volume);
    const back = await readVolume(path);
    assert.deepEqual(back.data, volume.data, ext);
    assert.deepEqual(back.shape, volume.shape, ext);
    assert.deepEqual(back.spacing, volume.spacing, ext);
  }
  const png = tmpPath("v.png");
  await writeVolume(png, {
    data: new Uint8Array([1, 2, 3, 4, 5, 6]),
    shape: [2, 3],
    spacing: [1, 1],
  });
  assert.deepEqual((await readVolume(png)).data, new Uint8Array([1, 2, 3, 4, 5, 6]));
  const typed = tmpPath("t.nii.gz");
  await writeVolume(typed, volume, { type: "uint8" });
  assert.ok((await readVolume(typed)).data instanceof Uint8Array);
  await assertUserError(
    readVolume(`${tmp}/x.tiff`),
    'Cannot read "',
    "unknown volume format",
    ".nii.gz",
  );
  await assertUserError(
    writeVolume(`${tmp}/x.tiff`, volume),
    "Cannot write",
    "unknown volume format",
  );
});
