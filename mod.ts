/**
 * Semi-supervised medical image segmentation with mutual-information regularisation
 * (Peng, Pedersoli, Desrosiers, MIDL 2020) on TensorFlow.js.
 *
 * Import this module by URL from another Deno program; every dependency carries a full `npm:`
 * specifier, so no import map is needed.
 *
 * @example
 * ```ts
 * import { parseRecipe, Trainer } from "./mod.ts";
 * const recipe = parseRecipe({
 *   method: "ours-kl",
 *   backend: "wasm",
 *   dataset: { type: "phantom", patients: 6, slicesPerPatient: 2, size: 32,
 *              split: { labeled: 2, unlabeled: 2, validation: 2 } },
 *   model: { type: "unet", base: 4, depth: 3 },
 *   regularizers: [{ type: "kl", weight: 1 }],
 *   trainer: { iterations: 1, labeledBatch: 2, unlabeledBatch: 2 },
 * }, "<inline>");
 * const trainer = await Trainer.create(recipe, { out: null, progress: false });
 * console.log(await trainer.step());
 * trainer.dispose();
 * ```
 *
 * @module
 */
export { tf, z } from "./deps.ts";
export type {
  OptionsSchema,
  Scalar,
  Tensor,
  Tensor1D,
  Tensor3D,
  Tensor4D,
  Variable,
} from "./core/types.ts";

export { UserError } from "./core/errors.ts";
export { PluginError, type PluginKind, type PluginRef } from "./core/plugin_errors.ts";
export { type Identified, type RegisterOptions, Registry } from "./core/registry.ts";
export { Rng, type RngState } from "./core/rng.ts";
export {
  type BackendName,
  BACKENDS,
  initBackend,
  type InitBackendOptions,
  shutdownBackend,
} from "./runtime/backend.ts";
export { KERNEL_MODES, type KernelMode } from "./runtime/tfjs_internals.ts";
export {
  type DatasetAccess,
  type DatasetAccessContext,
  type DatasetContext,
  type DatasetFactory,
  datasets,
  type PreprocessOptions,
  type SegmentationDataset,
  type SliceSet,
  type SourceGridPrediction,
  type Volume,
  type VolumeSource,
} from "./core/dataset.ts";
export {
  type ApplyOptions,
  type ModelContext,
  type ModelFactory,
  models,
  type SegmentationModel,
  uniqueVariableScope,
  variableName,
} from "./core/model.ts";
export {
  type Interpolation,
  type InvertibleTransform,
  type TransformFactory,
  transforms,
} from "./core/transform.ts";
export {
  type PairedPredictions,
  pairedPredictions,
  type Pairing,
  pairMask,
  pairSource,
  pairTarget,
  type Regularizer,
  type RegularizerContext,
  type RegularizerFactory,
  regularizers,
  type StepContext,
  type StepEndContext,
  toPairFrame,
} from "./core/regularizer.ts";
export {
  isReservedMetricName,
  type LoadedRecipe,
  loadRecipe,
  type LoadRecipeOptions,
  parseRecipe,
  type PluginOptions,
  type Recipe,
  RESERVED_METRIC_NAMES,
  validatePluginOptions,
} from "./core/recipe.ts";
export type { EvaluateOptions, Evaluation, GridScores, VolumeScores } from "./core/evaluate.ts";
export {
  type ReadStep,
  sigmoidRampUp,
  type Summary,
  Trainer,
  type TrainerOptions,
} from "./core/trainer.ts";
export type { NamedRegularizer } from "./core/networks.ts";
export type { RunEnvironment } from "./core/provenance.ts";
export {
  diceScores,
  hd95,
  meanPerClass,
  nanMeanPerClass,
  percentile,
  squaredDistanceTransform,
  surfaceVoxels,
} from "./core/metrics.ts";
export { datasetOverride, exportPrediction, predictionFileName } from "./app/export.ts";
export { Adam, type AdamOptions, learningRate, type ScheduleOptions } from "./core/optimizer.ts";
export {
  type Checkpoint,
  loadCheckpoint,
  saveCheckpoint,
  type StoredTensor,
} from "./core/checkpoint.ts";

export { registerBuiltins } from "./plugins/mod.ts";
export { type LossContext, losses, type LossFactory, type SupervisedLoss } from "./core/loss.ts";
export { crossEntropyLoss } from "./plugins/losses/cross_entropy.ts";
export { diceCeLoss, diceLoss, softDice, type SoftDiceOptions } from "./plugins/losses/dice.ts";
export { type AffineSampling } from "./core/warp.ts";
export { registerWasmTrainingKernels } from "./runtime/kernels/wasm_training.ts";
export { crossEntropy } from "./plugins/losses/cross_entropy.ts";
export { klConsistency, type KlConsistencyOptions } from "./plugins/regularizers/kl_consistency.ts";
export {
  AFFINE,
  type Affine,
  type AffineTransform,
  affineTransform,
  composeAffine,
  composeTransforms,
  invertAffine,
  sampleRandomAffine,
  warpAffine,
} from "./plugins/transforms/affine.ts";
export { unetModel, type UNetOptions } from "./plugins/models/unet.ts";
export {
  generatePhantomPatient,
  phantomDataset,
  type PhantomOptions,
  type PhantomPatient,
  type PhantomSplit,
} from "./plugins/datasets/phantom.ts";
export {
  mutualInformation,
  type MutualInformationOptions,
} from "./plugins/regularizers/mutual_information.ts";
export {
  mseConsistency,
  type MseConsistencyOptions,
  mseRegularizer,
} from "./plugins/regularizers/mse_consistency.ts";
export {
  entropyMinRegularizer,
  meanEntropy,
  type MeanEntropyOptions,
} from "./plugins/regularizers/entropy_minimization.ts";
export {
  emaDecay,
  MeanTeacher,
  type MeanTeacherFactory,
  type MeanTeacherOptions,
  meanTeacherRegularizer,
} from "./plugins/regularizers/mean_teacher.ts";
export { klRegularizer } from "./plugins/regularizers/kl_consistency.ts";
export { miRegularizer } from "./plugins/regularizers/mutual_information.ts";
export { stopGradient } from "./core/ops.ts";
export {
  readVolume,
  type ReadVolumeOptions,
  stripVolumeExtension,
  type VolumeFormat,
  volumeFormat,
  writeVolume,
  type WriteVolumeOptions,
} from "./io/volume.ts";
export type { VolumeData, VoxelArray, VoxelType } from "./io/volume_data.ts";
export { type NiftiVolume, type NiftiWriteOptions, readNifti, writeNifti } from "./io/nifti.ts";
export {
  MET_ELEMENT_TYPES,
  type MetaImageSource,
  type MetaImageVolume,
  type MetaImageWriteOptions,
  type MetElementType,
  parseMetaImage,
  readMetaImage,
  writeMetaImage,
} from "./io/metaimage.ts";
export {
  type Hdf5DatasetInput,
  readHdf5,
  readHdf5Datasets,
  type ReadHdf5Options,
  readSsl4misHdf5,
  writeHdf5,
} from "./io/hdf5.ts";
export {
  listPngSlices,
  type PngSliceGroup,
  type PngSliceOptions,
  readPng,
  readPngSliceFolder,
  writePng,
} from "./io/png_slices.ts";
export { acdcDataset, type AcdcOptions } from "./plugins/datasets/acdc.ts";
export { promise12Dataset, type Promise12Options } from "./plugins/datasets/promise12.ts";
export { spleenDataset, type SpleenOptions } from "./plugins/datasets/spleen.ts";
export { folderDataset, type FolderOptions } from "./plugins/datasets/folder.ts";

export {
  type CommonDatasetOptions,
  type CommonOptionFields,
  commonOptionFields,
  fileDatasetAccess,
  filePreprocessing,
  type Fit,
  type LayoutCase,
  listNames,
  loadSplitDataset,
  pairCase,
  type RawCase,
  readList,
  resolveRoot,
  type SplitDatasetInput,
  type SplitOptions,
  splitOptionsSchema,
} from "./plugins/datasets/file_dataset.ts";

// Library users get the built-in plugins with no extra call; a plugin registered under a
// built-in id before this module was imported is kept.
import { registerBuiltins as registerBuiltinPlugins } from "./plugins/mod.ts";
registerBuiltinPlugins();
