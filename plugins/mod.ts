/**
 * The built-in plugins, registered by {@linkcode registerBuiltins}.
 *
 * @module
 */
import { datasets } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { losses } from "../core/loss.ts";
import { models } from "../core/model.ts";
import type { Registry } from "../core/registry.ts";
import { regularizers } from "../core/regularizer.ts";
import { type TransformFactory, transforms } from "../core/transform.ts";
import type { z } from "../deps.ts";
import { phantomDataset } from "./datasets/phantom.ts";
import { acdcDataset } from "./datasets/acdc.ts";
import { promise12Dataset } from "./datasets/promise12.ts";
import { spleenDataset } from "./datasets/spleen.ts";
import { folderDataset } from "./datasets/folder.ts";
import { crossEntropyLoss } from "./losses/cross_entropy.ts";
import { diceCeLoss, diceLoss } from "./losses/dice.ts";
import { unetModel } from "./models/unet.ts";
import { klRegularizer } from "./regularizers/kl_consistency.ts";
import { miRegularizer } from "./regularizers/mutual_information.ts";
import { mseRegularizer } from "./regularizers/mse_consistency.ts";
import { entropyMinRegularizer } from "./regularizers/entropy_minimization.ts";
import { meanTeacherRegularizer } from "./regularizers/mean_teacher.ts";
import {
  affineTransformPlugin,
  composeOptions,
  composeTransforms,
  flipTransformPlugin,
} from "./transforms/affine.ts";

/** The `compose` transform plugin: its parts are other registered transforms. */
export const composeTransformPlugin: TransformFactory<z.infer<typeof composeOptions>> = {
  id: "compose",
  description: "A cascade of transforms applied in order and inverted in reverse order",
  options: composeOptions,
  partsOption: "transforms",
  create: (options) =>
    composeTransforms(options.transforms.map((entry, i) => {
      const { type, ...rest } = entry;
      const factory = transforms.get(type);
      const parsed = factory.options.safeParse(rest);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new UserError(
          `transform.transforms[${i}].${issue.path.join(".")}: ${issue.message}`,
        );
      }
      return factory.create(parsed.data);
    })),
};

/**
 * Register every built-in plugin. Idempotent, and an id already registered (a user plugin that
 * registered `unet`, say, before this call) is kept, not replaced. The trainer does not call it:
 * `mod.ts` does at import, and so do the CLI and the launcher.
 */
export function registerBuiltins(): void {
  const add = <T extends { id: string }>(registry: Registry<T>, entries: T[]) => {
    for (const entry of entries) if (!registry.has(entry.id)) registry.register(entry);
  };
  add(datasets, [phantomDataset, acdcDataset, promise12Dataset, spleenDataset, folderDataset]);
  add(models, [unetModel]);
  add(regularizers, [
    klRegularizer,
    miRegularizer,
    mseRegularizer,
    entropyMinRegularizer,
    meanTeacherRegularizer,
  ]);
  add(transforms, [affineTransformPlugin, flipTransformPlugin, composeTransformPlugin]);
  add(losses, [crossEntropyLoss, diceLoss, diceCeLoss]);
}
