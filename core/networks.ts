/**
 * The networks of a recipe, built without its data: the student and the regularizers (a mean
 * teacher holds a second model), each named uniquely. The trainer trains them; `predict` builds
 * them to load a run's checkpoint.
 *
 * @module
 */
import type { tf } from "../deps.ts";
import { UserError } from "./errors.ts";
import { models, type SegmentationModel, uniqueVariableScope } from "./model.ts";
import { callPlugin, type PluginRef } from "./plugin_errors.ts";
import type { PluginOptions, Recipe } from "./recipe.ts";
import { type Regularizer, regularizers } from "./regularizer.ts";

/** A regularizer of a run, under its unique name (the prefix of its checkpointed tensors). */
export interface NamedRegularizer {
  /** Its name: the recipe entry's `name`, else its type (`kl`, `kl2`, ... when repeated). */
  name: string;
  /** Its weight (multiplied by `lambda` and the ramp). */
  weight: number;
  /** The instance. */
  instance: Regularizer;
  /** Its plugin id and recipe entry (`regularizers[1]`), as failures name them. */
  plugin?: PluginRef;
}

/** The networks of a recipe: the student and the regularizers (a mean teacher holds one). */
export interface Networks {
  /** The student. */
  model: SegmentationModel;
  /** The regularizers, named uniquely. */
  regularizers: NamedRegularizer[];
  /**
   * The prefix of every tfjs variable name of these networks (`run1/`, ...), unique in the
   * process; checkpoints name the variables without it.
   */
  scope?: string;
}

/**
 * Input channels of every model: each dataset's slices hold one intensity per pixel
 * (`SliceSet.images` is `[count, H, W]`), so the trainer feeds `[B, H, W, 1]`. A multi-channel
 * dataset would need a channel count in `SliceSet` and `Volume` first.
 */
const IN_CHANNELS = 1;

/**
 * Build the networks of a validated recipe for `numClasses` classes without its data: the
 * student (`student/...` variables) and the regularizers, each named by `name` or its type
 * (`kl`, `kl2`, ... when repeated). `predict` builds these to load a run's checkpoint.
 */
export function createNetworks(
  recipe: Recipe,
  parsed: PluginOptions,
  numClasses: number,
): Networks & { scope: string; dispose(): void } {
  const modelFactory = models.get(recipe.model.type);
  const scope = uniqueVariableScope();
  const modelNames = new Set<string>();
  const createModel = (name: string) => {
    if (modelNames.has(name)) {
      throw new UserError(
        `Cannot build a second model named "${name}" in one run (a run holds one model per ` +
          `name: one student, at most one mean-teacher regularizer)`,
      );
    }
    const plugin: PluginRef = { kind: "model", id: recipe.model.type, entry: "model" };
    const built = callPlugin(
      plugin,
      { method: "create()", expected: "a model" },
      () =>
        modelFactory.create(parsed.model, {
          inChannels: IN_CHANNELS,
          numClasses,
          seed: recipe.seed,
          name,
          scope,
        }),
    );
    modelNames.add(name);
    return built;
  };
  const model = createModel("student");
  const regs: NamedRegularizer[] = [];
  const names = new Set<string>();
  const dispose = () => {
    for (const r of regs) r.instance.dispose?.();
    model.dispose();
  };
  try {
    for (const [i, r] of parsed.regularizers.entries()) {
      let name = r.name ?? r.type;
      for (let k = 2; names.has(name) || name === "sup" || name === "loss"; k++) {
        name = `${r.name ?? r.type}${k}`;
      }
      names.add(name);
      const plugin: PluginRef = { kind: "regularizer", id: r.type, entry: `regularizers[${i}]` };
      const instance = callPlugin(
        plugin,
        { method: "create()", expected: "a regularizer" },
        () =>
          regularizers.get(r.type).create(r.options, {
            model,
            numClasses,
            seed: recipe.seed,
            createModel,
          }),
      );
      regs.push({ name, weight: r.weight, instance, plugin });
    }
  } catch (error) {
    dispose();
    throw error;
  }
  return { model, regularizers: regs, scope, dispose };
}

/**
 * The networks' tensors as a checkpoint names them: the student's (`student/...`), then each
 * regularizer's as `<regularizer name>/<tensor>` (a mean teacher's `mean-teacher/teacher/...`).
 */
export function networkTensors(networks: Networks): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [k, v] of networks.model.trainable) out.set(k, v);
  for (const [k, v] of networks.model.state) out.set(k, v);
  for (const r of networks.regularizers) {
    for (const [k, v] of r.instance.stateTensors?.() ?? []) out.set(`${r.name}/${k}`, v);
  }
  return out;
}

/** The network a run evaluates and reports: a regularizer's (a mean teacher's teacher), else the student. */
export function evaluationModelOf(networks: Networks): SegmentationModel {
  for (const r of networks.regularizers) {
    const m = r.instance.evaluationModel?.();
    if (m) return m;
  }
  return networks.model;
}
