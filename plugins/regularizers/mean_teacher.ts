/**
 * Mean Teacher (Tarvainen & Valpola 2017), the paper's strongest baseline (section 3.2): a
 * teacher network whose weights are an exponential moving average (EMA) of the student's, and a
 * consistency term between the student's prediction of a transformed image, brought back, and
 * the teacher's prediction of the clean image. The **teacher** is the network the run evaluates
 * and keeps as its result.
 *
 * Choices, where papers and code bases differ (see `docs/method.md`):
 * - Inverse form (the default): the loss compares `T^-1(student(T x))` (the trainer's
 *   `probsTransformedBack`) with `teacher(x)`, over the valid pixels of the inverse warp; with
 *   the recipe's `pairing: forward`, `student(T x)` with `T(teacher(x))`. SSL4MIS instead
 *   compares `student(x)` with `teacher(x + noise)`.
 * - The teacher runs in evaluation mode (`training: false`): batch norm uses the teacher's own
 *   running statistics (which are EMAs of the student's), no dropout, and nothing of the teacher
 *   changes during the loss. SSL4MIS runs it in train mode (batch statistics) under `no_grad`.
 * - The EMA covers the trainable weights **and** the batch-norm running statistics (the
 *   reference PyTorch code averages parameters only and lets buffers drift).
 * - Gradient: the teacher's probabilities pass through `stopGradient`, and its variables are
 *   marked non-trainable, so no gradient or optimizer ever reaches them.
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import type { SegmentationModel } from "../../core/model.ts";
import { stopGradient } from "../../core/ops.ts";
import type {
  Regularizer,
  RegularizerContext,
  RegularizerFactory,
  StepContext,
  StepEndContext,
} from "../../core/regularizer.ts";
import { pairMask, pairTarget, toPairFrame } from "../../core/regularizer.ts";
import { klConsistency } from "./kl_consistency.ts";
import { mseConsistency } from "./mse_consistency.ts";

/** Recipe options of the `mean-teacher` regularizer. */
export const meanTeacherOptions = z.object({
  decay: z.number().min(0).max(1).default(0.999).describe(
    "EMA decay `alpha` of the teacher's weights (Mean Teacher, SSL4MIS: 0.99-0.999).",
  ),
  warmup: z.boolean().default(true).describe(
    "Use `min(1 - 1/(t + 1), decay)` at optimizer step `t` (1-based) instead of `decay`, as " +
      "the Mean Teacher and SSL4MIS code do: early on the teacher is then the plain average of " +
      "the initial and all later student weights, instead of staying near the random " +
      "initialisation.",
  ),
  consistency: z.enum(["mse", "kl"]).default("mse").describe(
    "`mse`: mean over valid pixels and classes of `(student - teacher)^2`; `kl`: " +
      "`KL(teacher(x) || T^-1 student(T x))` per pixel (the teacher is the target).",
  ),
  mask: z.boolean().default(true).describe(
    "Leave out pixels the inverse warp brought in from outside.",
  ),
}).strict();

/** Parsed options of the `mean-teacher` regularizer. */
export type MeanTeacherOptions = z.infer<typeof meanTeacherOptions>;

/**
 * The EMA decay used after optimizer step `step` (1-based: the number of steps done, this one
 * included): `min(1 - 1/(step + 1), decay)` with `warmup`, else `decay`.
 *
 * @example
 * ```ts
 * import { emaDecay } from "./mean_teacher.ts";
 * emaDecay(1, 0.999, true); // 0.5
 * emaDecay(5000, 0.999, true); // 0.999
 * emaDecay(1, 0.999, false); // 0.999
 * ```
 */
export function emaDecay(step: number, decay: number, warmup: boolean): number {
  return warmup ? Math.min(1 - 1 / (step + 1), decay) : decay;
}

/**
 * A variable name without its first path component, the model's name:
 * `student/down0/conv0/kernel` -> `down0/conv0/kernel`.
 *
 * @example
 * ```ts
 * import { localName } from "./mean_teacher.ts";
 * localName("teacher/head/bias"); // "head/bias"
 * ```
 */
export function localName(name: string): string {
  const i = name.indexOf("/");
  return i < 0 ? name : name.slice(i + 1);
}

/** A teacher variable and the student variable it averages. */
export type VariablePair = [teacher: tf.Variable, student: tf.Variable];

/**
 * Match the variables of two models built alike under different names (`student/...`,
 * `teacher/...`), trainable with trainable and state with state, by their names without the
 * first path component. Throws when the sets or the shapes differ.
 *
 * @example
 * ```ts
 * import { unetModel, unetOptions } from "../models/unet.ts";
 * import { pairVariables } from "./mean_teacher.ts";
 * const o = unetOptions.parse({ base: 2, depth: 2 });
 * const ctx = { inChannels: 1, numClasses: 2, seed: 1 };
 * const student = unetModel.create(o, { ...ctx, name: "s" });
 * const teacher = unetModel.create(o, { ...ctx, name: "t" });
 * pairVariables(teacher, student).length; // every trainable and state variable
 * ```
 */
export function pairVariables(
  teacher: SegmentationModel,
  student: SegmentationModel,
): VariablePair[] {
  const pairs: VariablePair[] = [];
  for (const kind of ["trainable", "state"] as const) {
    const byName = new Map<string, tf.Variable>();
    for (const [name, v] of student[kind]) byName.set(localName(name), v);
    if (byName.size !== student[kind].size || byName.size !== teacher[kind].size) {
      throw new Error(
        `mean-teacher: the student has ${student[kind].size} and the teacher ` +
          `${teacher[kind].size} ${kind} variables (with ${byName.size} distinct local names)`,
      );
    }
    for (const [name, t] of teacher[kind]) {
      const s = byName.get(localName(name));
      if (s === undefined) {
        throw new Error(`mean-teacher: the student has no ${kind} variable "${localName(name)}"`);
      }
      if (s.shape.join("x") !== t.shape.join("x")) {
        throw new Error(
          `mean-teacher: "${localName(name)}" has shape ${s.shape} in the student, ` +
            `${t.shape} in the teacher`,
        );
      }
      pairs.push([t, s]);
    }
  }
  return pairs;
}

/**
 * `teacher = alpha * teacher + (1 - alpha) * student` for every pair, in place.
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { emaUpdate } from "./mean_teacher.ts";
 * const t = tf.variable(tf.scalar(0)), s = tf.variable(tf.scalar(1));
 * emaUpdate([[t, s]], 0.75); // t = 0.25
 * ```
 */
export function emaUpdate(pairs: VariablePair[], alpha: number): void {
  tf.tidy(() => {
    for (const [t, s] of pairs) t.assign(tf.add(tf.mul(t, alpha), tf.mul(s, 1 - alpha)));
  });
}

/**
 * A mean-teacher regularizer instance. Besides the {@linkcode Regularizer} methods it offers
 * `evaluationModel()` (the teacher), which the trainer evaluates and reports.
 *
 * @example
 * ```ts
 * import { unetModel, unetOptions } from "../models/unet.ts";
 * import { MeanTeacher, meanTeacherOptions } from "./mean_teacher.ts";
 * const o = unetOptions.parse({ base: 2, depth: 2 });
 * const create = (name: string) =>
 *   unetModel.create(o, { inChannels: 1, numClasses: 3, seed: 1, name });
 * const model = create("student");
 * const mt = new MeanTeacher(meanTeacherOptions.parse({}), {
 *   model,
 *   numClasses: 3,
 *   seed: 1,
 *   createModel: create,
 * });
 * mt.onStepEnd({ iteration: 0, model }); // after each optimizer step
 * mt.dispose();
 * ```
 */
export class MeanTeacher implements Regularizer {
  /** The plugin id. */
  readonly id = "mean-teacher";
  /** The loss needs `x_u` and `T^-1 f(T x_u)`. */
  readonly needsUnlabeled = true;
  /** The EMA network (owned by this instance). */
  readonly teacher: SegmentationModel;
  readonly #options: MeanTeacherOptions;
  readonly #pairs: VariablePair[];
  #disposed = false;

  /**
   * Build the teacher with `context.createModel("teacher")` and copy the student's trainable
   * and state variables into it. In a run, `createModel` throws a `UserError` when the run
   * already has a model named `teacher` (a second mean teacher).
   */
  constructor(options: MeanTeacherOptions, context: RegularizerContext) {
    this.#options = options;
    // The trainer's `createModel` refuses a name a run already holds (a second mean teacher)
    // with a UserError, and scopes the variables by run.
    const teacher = context.createModel("teacher");
    try {
      this.#pairs = pairVariables(teacher, context.model);
    } catch (error) {
      teacher.dispose();
      throw error;
    }
    this.teacher = teacher;
    for (const [t, s] of this.#pairs) {
      t.assign(s);
      t.trainable = false;
    }
  }

  /**
   * The consistency between the student's `T^-1(softmax student(T x_u))` and the teacher's
   * `softmax teacher(x_u)` (evaluation mode, gradient stopped), masked by `validMask`; with the
   * recipe's `pairing: forward`, between `softmax student(T x_u)` and `T(softmax teacher(x_u))`,
   * masked by `forwardMask`.
   */
  loss(ctx: StepContext): tf.Scalar {
    return tf.tidy(() => {
      const logits = this.teacher.apply(ctx.xUnlabeled, { training: false });
      const target = toPairFrame(ctx, stopGradient(tf.softmax(logits) as tf.Tensor4D));
      const student = pairTarget(ctx);
      const mask = this.#options.mask ? pairMask(ctx) : undefined;
      return this.#options.consistency === "kl"
        ? klConsistency(target, student, { mask })
        : mseConsistency(student, target, { mask });
    });
  }

  /**
   * EMA update of every teacher variable after optimizer step `iteration + 1`, from the student
   * the instance was created for (`context.model`, the same network as `ctx.model`).
   */
  onStepEnd(ctx: StepEndContext): void {
    emaUpdate(this.#pairs, emaDecay(ctx.iteration + 1, this.#options.decay, this.#options.warmup));
  }

  /** The network to evaluate and keep: the teacher. */
  evaluationModel(): SegmentationModel {
    return this.teacher;
  }

  /** The teacher's trainable and state variables, by their full names (`teacher/...`). */
  stateTensors(): Map<string, tf.Variable> {
    return new Map([...this.teacher.trainable, ...this.teacher.state]);
  }

  /** Free the teacher (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.teacher.dispose();
  }
}

/** The mean-teacher plugin's type: a regularizer factory whose instances are {@linkcode MeanTeacher}s. */
export interface MeanTeacherFactory extends RegularizerFactory<MeanTeacherOptions> {
  /** A new {@linkcode MeanTeacher} for the student `context.model`. */
  create(options: MeanTeacherOptions, context: RegularizerContext): MeanTeacher;
}

/** The `mean-teacher` regularizer plugin. */
export const meanTeacherRegularizer: MeanTeacherFactory = {
  id: "mean-teacher",
  description:
    "Mean Teacher: EMA teacher, consistency between T^-1(student(T x)) and teacher(x); the teacher is evaluated",
  options: meanTeacherOptions,
  create: (options, context) => new MeanTeacher(options, context),
};
