/**
 * The built-in plugins, registered by {@linkcode registerBuiltins}.
 *
 * @module
 */
import { datasets } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { models } from "../core/model.ts";
import { regularizers } from "../core/regularizer.ts";
import { type TransformFactory, transforms } from "../core/transform.ts";
import type { z } from "../deps.ts";
import { phantomDataset } from "./datasets/phantom.ts";
import { acdcDataset } from "./datasets/acdc.ts";
import { promise12Dataset } from "./datasets/promise12.ts";
import { spleenDataset } from "./datasets/spleen.ts";
import { folderDataset } from "./datasets/folder.ts";
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

let registered = false;

/** Register every built-in plugin (idempotent). */
export function registerBuiltins(): void {
  if (registered) return;
  registered = true;
  datasets.register(phantomDataset, { override: true });
  datasets.register(acdcDataset, { override: true });
  datasets.register(promise12Dataset, { override: true });
  datasets.register(spleenDataset, { override: true });
  datasets.register(folderDataset, { override: true });
  models.register(unetModel, { override: true });
  regularizers.register(klRegularizer, { override: true });
  regularizers.register(miRegularizer, { override: true });
  regularizers.register(mseRegularizer, { override: true });
  regularizers.register(entropyMinRegularizer, { override: true });
  regularizers.register(meanTeacherRegularizer, { override: true });
  transforms.register(affineTransformPlugin, { override: true });
  transforms.register(flipTransformPlugin, { override: true });
  transforms.register(composeTransformPlugin, { override: true });
}
