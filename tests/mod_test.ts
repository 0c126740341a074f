/**
 * The public surface of mod.ts, pinned: adding or removing an export must update EXPORTS here,
 * deliberately. Value exports are checked against the loaded module, type exports against the
 * source (types do not exist at run time). `deno task doc:lint` checks that each is documented.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ownDiagnostics, parseDocLint } from "../app/doc_lint.ts";

const MOD = fileURLToPath(new URL("../mod.ts", import.meta.url));

/** Every name mod.ts exports, `type ` in front of the type-only ones, sorted by name. */
const EXPORTS = [
  "AFFINE",
  "Adam",
  "type AdamOptions",
  "type AcdcOptions",
  "type Affine",
  "type AffineSampling",
  "type AffineTransform",
  "type ApplyOptions",
  "BACKENDS",
  "type BackendName",
  "type Checkpoint",
  "type CommonDatasetOptions",
  "type CommonOptionFields",
  "type DatasetAccess",
  "type DatasetAccessContext",
  "type DatasetContext",
  "type DatasetFactory",
  "type EvaluateOptions",
  "type Evaluation",
  "type Fit",
  "type FolderOptions",
  "type Hdf5DatasetInput",
  "type Identified",
  "type InitBackendOptions",
  "type Interpolation",
  "type InvertibleTransform",
  "KERNEL_MODES",
  "type KernelMode",
  "type KlConsistencyOptions",
  "type LayoutCase",
  "type LoadRecipeOptions",
  "type LoadedRecipe",
  "type LossContext",
  "type LossFactory",
  "MET_ELEMENT_TYPES",
  "MeanTeacher",
  "type MeanEntropyOptions",
  "type MeanTeacherFactory",
  "type MeanTeacherOptions",
  "type MetElementType",
  "type MetaImageVolume",
  "type MetaImageWriteOptions",
  "type ModelContext",
  "type ModelFactory",
  "type MseConsistencyOptions",
  "type MutualInformationOptions",
  "type NamedRegularizer",
  "type NiftiVolume",
  "type NiftiWriteOptions",
  "type OptionsSchema",
  "type PairedPredictions",
  "type Pairing",
  "type PhantomOptions",
  "type PhantomPatient",
  "type PhantomSplit",
  "PluginError",
  "type PluginKind",
  "type PluginOptions",
  "type PluginRef",
  "type PngSliceGroup",
  "type PngSliceOptions",
  "type Promise12Options",
  "RESERVED_METRIC_NAMES",
  "type RawCase",
  "type ReadHdf5Options",
  "type ReadVolumeOptions",
  "type Recipe",
  "type RegisterOptions",
  "Registry",
  "type Regularizer",
  "type RegularizerContext",
  "type RegularizerFactory",
  "Rng",
  "type RngState",
  "type RunEnvironment",
  "type Scalar",
  "type ScheduleOptions",
  "type SegmentationDataset",
  "type SegmentationModel",
  "type SliceSet",
  "type SoftDiceOptions",
  "type SpleenOptions",
  "type SplitDatasetInput",
  "type SplitOptions",
  "type StepContext",
  "type StepEndContext",
  "type StoredTensor",
  "type Summary",
  "type SupervisedLoss",
  "type Tensor",
  "type Tensor1D",
  "type Tensor3D",
  "type Tensor4D",
  "Trainer",
  "type TrainerOptions",
  "type TransformFactory",
  "type UNetOptions",
  "UserError",
  "type Variable",
  "type Volume",
  "type VolumeData",
  "type VolumeFormat",
  "type VolumeSource",
  "type VoxelArray",
  "type VoxelType",
  "type WriteVolumeOptions",
  "acdcDataset",
  "affineTransform",
  "commonOptionFields",
  "composeAffine",
  "composeTransforms",
  "crossEntropy",
  "crossEntropyLoss",
  "datasetOverride",
  "datasets",
  "diceCeLoss",
  "diceLoss",
  "diceScores",
  "emaDecay",
  "entropyMinRegularizer",
  "exportPrediction",
  "fileDatasetAccess",
  "folderDataset",
  "generatePhantomPatient",
  "hd95",
  "initBackend",
  "invertAffine",
  "isReservedMetricName",
  "klConsistency",
  "klRegularizer",
  "learningRate",
  "listNames",
  "listPngSlices",
  "loadCheckpoint",
  "loadRecipe",
  "loadSplitDataset",
  "losses",
  "meanEntropy",
  "meanPerClass",
  "meanTeacherRegularizer",
  "miRegularizer",
  "models",
  "mseConsistency",
  "mseRegularizer",
  "mutualInformation",
  "nanMeanPerClass",
  "pairCase",
  "pairMask",
  "pairSource",
  "pairTarget",
  "pairedPredictions",
  "parseRecipe",
  "percentile",
  "phantomDataset",
  "predictionFileName",
  "promise12Dataset",
  "readHdf5",
  "readHdf5Datasets",
  "readList",
  "readMetaImage",
  "readNifti",
  "readPng",
  "readPngSliceFolder",
  "readSsl4misHdf5",
  "readVolume",
  "registerBuiltins",
  "registerWasmTrainingKernels",
  "regularizers",
  "resolveRoot",
  "sampleRandomAffine",
  "saveCheckpoint",
  "shutdownBackend",
  "sigmoidRampUp",
  "softDice",
  "spleenDataset",
  "splitOptionsSchema",
  "squaredDistanceTransform",
  "stopGradient",
  "stripVolumeExtension",
  "surfaceVoxels",
  "tf",
  "toPairFrame",
  "transforms",
  "uniqueVariableScope",
  "unetModel",
  "validatePluginOptions",
  "variableName",
  "volumeFormat",
  "warpAffine",
  "writeHdf5",
  "writeMetaImage",
  "writeNifti",
  "writePng",
  "writeVolume",
  "z",
];

/** The names of `export { a, type B, c as d } from "..."` and `export type { ... }` in `source`. */
function exportedNames(source: string): string[] {
  const out: string[] = [];
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  for (const m of code.matchAll(/export\s+(type\s+)?\{([^}]*)\}/g)) {
    for (const item of m[2].split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      const isType = m[1] !== undefined || item.startsWith("type ");
      const name = item.replace(/^type\s+/, "").split(/\s+as\s+/).pop()!.trim();
      out.push(isType ? `type ${name}` : name);
    }
  }
  assert.doesNotMatch(code, /export\s+(const|function|class|let|\*)/, "export only by list");
  return out;
}

const byName = (a: string, b: string) =>
  a.replace(/^type /, "").localeCompare(b.replace(/^type /, ""), "en");

Deno.test("mod.ts exports exactly the pinned names (update EXPORTS on purpose)", async () => {
  const declared = exportedNames(await Deno.readTextFile(MOD));
  assert.equal(new Set(declared).size, declared.length, "a name exported twice");
  assert.deepEqual([...declared].sort(byName), [...EXPORTS].sort(byName));
  const values = EXPORTS.filter((n) => !n.startsWith("type ")).sort();
  const mod = await import("../mod.ts");
  assert.deepEqual(Object.keys(mod).sort(), values);
});

Deno.test("the doc lint filter keeps our diagnostics and leaves out tfjs's, zod's and references to them", () => {
  const output = [
    "error[missing-jsdoc]: exported symbol is missing JSDoc documentation",
    "  --> /repo/core/x.ts:3:1",
    "error[private-type-ref]: public type 'A' references private type 'Tensor4D'",
    "  --> /repo/core/y.ts:4:1",
    "error[private-type-ref]: public type 'B' references private type 'Secret'",
    "  --> /repo/core/y.ts:9:1",
    "error[missing-jsdoc]: exported symbol is missing JSDoc documentation",
    "  --> /cache/npm/zod/types.d.ts:1:1",
    "error[missing-jsdoc]: exported symbol is missing JSDoc documentation",
    "  --> /repo/deps.ts:11:8",
  ].join("\n");
  const all = parseDocLint(output);
  assert.equal(all.length, 5);
  const lines: Record<string, string> = {
    "/repo/deps.ts:11:8": 'export * as tf from "npm:@tensorflow/tfjs-core@4.22.0";',
  };
  const own = ownDiagnostics(all, "/repo", (loc) => lines[loc] ?? "");
  assert.deepEqual(own.map((d) => d.location), ["/repo/core/x.ts:3:1", "/repo/core/y.ts:9:1"]);
});
