/**
 * The trainer: iteration-based semi-supervised training. Each step draws a labeled and an
 * unlabeled batch, runs the network once over `[x_l, x_u, T(x_u)]`, shares those predictions
 * among all regularizers, and minimises `w_sup * L_sup + lambda * ramp(t) * sum_i w_i L_i` with
 * Adam and a learning-rate schedule. Validation runs on 3D volumes; the best checkpoint is kept
 * by validation mean Dice.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { loadCheckpoint, restoreTensors, saveCheckpoint } from "./checkpoint.ts";
import type { SegmentationDataset, SliceSet, Volume } from "./dataset.ts";
import { InterruptedError, NonFiniteLossError, UserError } from "./errors.ts";
import {
  type EvaluateOptions,
  evaluateVolumes,
  type Evaluation,
  formatDice,
  predictVolume,
} from "./evaluate.ts";
import type { SegmentationModel } from "./model.ts";
import { evaluationModelOf, type NamedRegularizer, networkTensors } from "./networks.ts";
import { Adam, learningRate } from "./optimizer.ts";
import {
  callPlugin,
  checkLogits,
  checkScalarLoss,
  PluginError,
  type PluginRef,
} from "./plugin_errors.ts";
import { Progress } from "./progress.ts";
import { loadRecipe, type Recipe } from "./recipe.ts";
import type { StepContext } from "./regularizer.ts";
import { Rng, type RngState } from "./rng.ts";
import { runEnvironment } from "./provenance.ts";
import { RUN_FILES, RunDir, type Summary } from "./run_dir.ts";
import { setUpRun, type TrainerOptions, type TrainerParts } from "./setup.ts";
import { createStepContext } from "./step_context.ts";
import type { InvertibleTransform } from "./transform.ts";
import type { SupervisedLoss } from "./loss.ts";
import { drawBatch } from "./batch.ts";

export type { TrainerOptions } from "./setup.ts";
export type { Summary } from "./run_dir.ts";
export { InterruptedError, NonFiniteLossError } from "./errors.ts";

interface CheckpointMeta {
  iteration: number;
  rng: RngState;
  adamStep: number;
  skippedSteps?: number;
  best: { iteration: number; dice_mean: number };
  /** Training seconds (`seconds` in checkpoints written before the other times existed). */
  secondsTrain?: number;
  seconds?: number;
  secondsValidation?: number;
  secondsData?: number;
  secondsWall?: number;
}

/** One step's draws: the labeled batch, the unlabeled one (when used) and `T`'s parameters. */
interface StepBatch {
  x: tf.Tensor4D;
  y: tf.Tensor3D;
  xu: tf.Tensor4D | null;
  params: unknown;
  dropoutSeed: number;
  /** Every tensor above, to dispose after the step. */
  tensors: tf.Tensor[];
}

/** What a step keeps beyond its gradient tape (disposed after the step). */
interface StepTensors {
  terms: Map<string, tf.Tensor>;
  kept: tf.Tensor[];
  logits: tf.Tensor | null;
}

const SAMPLE = { method: "sample()", expected: "transform parameters" };
const TRANSFORM = { method: "apply()", expected: "the transformed batch" };
const APPLY = { method: "apply()", expected: "logits [batch, height, width, classes]" };
const LOSS = { method: "loss()", expected: "a scalar loss" };

/** A regularizer's plugin as failures name it. */
function regularizerRef(reg: NamedRegularizer): PluginRef {
  return reg.plugin ?? { kind: "regularizer", id: reg.name, entry: `regularizers (${reg.name})` };
}

/** Sigmoid ramp-up `exp(-5 (1 - t/L)^2)` (Laine & Aila; SSL4MIS). */
export function sigmoidRampUp(iteration: number, length: number): number {
  if (length <= 0 || iteration >= length) return 1;
  const t = 1 - Math.max(iteration, 0) / length;
  return Math.exp(-5 * t * t);
}

/** Trains one recipe. Build it with {@linkcode Trainer.create}; free it with `dispose()`. */
export class Trainer {
  /** The validated recipe. */
  readonly recipe: Recipe;
  /** The loaded dataset. */
  readonly dataset: SegmentationDataset;
  /** The student network. */
  readonly model: SegmentationModel;
  /** The transform `T` of the consistency terms. */
  readonly transform: InvertibleTransform;
  /** The regularizers, by unique name. */
  readonly regularizers: NamedRegularizer[];
  /** The supervised loss (`supervised.type` of the recipe). */
  readonly supervisedLoss: SupervisedLoss;
  /** The tfjs backend in use (`wasm`, `cpu`, ...). */
  readonly backend: string;
  /** The run directory, or `null` when the run writes nothing. */
  readonly runDir: string | null;
  readonly #runDir: RunDir | null;
  /** 0-based index of the next iteration. */
  iteration = 0;
  /** Steps skipped because a loss term was not finite (`trainer.nonFinite: skip`). */
  skippedSteps = 0;
  #stopSignal: "SIGINT" | "SIGTERM" | null = null;
  readonly #optimizer: Adam;
  readonly #rng: Rng;
  readonly #log: (line: string) => void;
  readonly #progress: boolean;
  readonly #needsUnlabeled: boolean;
  #best = { iteration: 0, dice_mean: -1 };
  /** Seconds of training steps, validations and data loading, over every session of the run. */
  #seconds = { train: 0, validation: 0, data: 0 };
  /** Wall seconds of earlier sessions (a resumed run), and when this one started. */
  #wallBefore = 0;
  readonly #wallStart: number;
  #metricsFile: Deno.FsFile | null = null;
  /** The recipe's model, transform and supervised loss plugins, as failures name them. */
  readonly #plugins: Record<"model" | "transform" | "supervised", PluginRef>;

  private constructor(init: TrainerParts) {
    this.recipe = init.recipe;
    this.dataset = init.dataset;
    this.model = init.model;
    this.transform = init.transform;
    this.regularizers = init.regularizers;
    this.supervisedLoss = init.supervisedLoss;
    this.backend = init.backend;
    this.#runDir = init.runDir;
    this.runDir = init.runDir?.path ?? null;
    this.#log = init.log;
    this.#progress = init.progress;
    this.#wallStart = init.wallStart;
    this.#seconds.data = init.secondsData;
    this.#rng = new Rng(init.recipe.seed * 7919 + 17);
    const o = init.recipe.optimizer;
    this.#optimizer = new Adam(init.model.trainable, {
      beta1: o.beta1,
      beta2: o.beta2,
      epsilon: o.epsilon,
      weightDecay: o.weightDecay,
      scope: init.scope,
    });
    this.#plugins = {
      model: { kind: "model", id: init.recipe.model.type, entry: "model" },
      transform: { kind: "transform", id: init.recipe.transform.type, entry: "transform" },
      supervised: { kind: "loss", id: init.recipe.supervised.type, entry: "supervised" },
    };
    this.#needsUnlabeled = init.regularizers.some((r) => r.instance.needsUnlabeled) &&
      init.recipe.trainer.unlabeledBatch > 0;
  }

  /**
   * Build everything a run needs from a validated recipe ({@linkcode setUpRun}): backend, plugin
   * modules, dataset, model, transform, regularizers, and the run directory once all of that
   * worked. The plugins must be registered before: importing `mod.ts` registers the built-in
   * ones (or call `registerBuiltins()` from `plugins/mod.ts`); the trainer registers nothing.
   * A failure frees everything built so far; several trainers can live in one process.
   */
  static async create(recipe: Recipe, options: TrainerOptions = {}): Promise<Trainer> {
    return new Trainer(await setUpRun(recipe, options));
  }

  /** Copies of the non-trainable model state (batch-norm statistics), to undo a bad step. */
  #snapshotState(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [k, v] of this.model.state) out.set(k, tf.clone(v));
    return out;
  }

  #restoreState(snapshot: Map<string, tf.Tensor>): void {
    for (const [k, v] of snapshot) this.model.state.get(k)!.assign(v);
  }

  /**
   * Continue an interrupted run from `<runDir>/latest.ckpt`: the run's own `recipe.yaml`, its
   * weights, optimizer moments, plugin state (EMA teacher), rng state (data order, transforms)
   * and schedule position. `metrics.jsonl` is cut back to the checkpoint's iteration, so that the
   * finished run's metrics equal those of an uninterrupted one.
   */
  static async resume(
    runDir: string,
    options: Omit<TrainerOptions, "out" | "resolved" | "baseDir"> & { set?: string[] } = {},
  ): Promise<Trainer> {
    const dir = new RunDir(runDir);
    await refuseResume(dir);
    const info = await dir.info();
    const loaded = await loadRecipe(dir.file("recipe"), { set: options.set });
    const trainer = await Trainer.create(loaded.recipe, {
      ...options,
      baseDir: info.baseDir,
      recipeFile: info.recipe ?? undefined,
      source: dir.file("recipe"),
      out: runDir,
      resolved: loaded.resolved,
      resuming: true,
    });
    try {
      await trainer.loadCheckpoint(dir.checkpoint("latest"));
      await dir.cutMetrics(trainer.iteration);
    } catch (error) {
      trainer.dispose();
      throw error;
    }
    return trainer;
  }

  /** The networks' tensors and the optimizer's moments to checkpoint, by unique name. */
  #stateTensors(): Map<string, tf.Variable> {
    return new Map([...networkTensors(this), ...this.#optimizer.stateVariables()]);
  }

  /** Save a checkpoint (`latest.ckpt` or `best.ckpt`) in the run directory. */
  async saveCheckpoint(file: "latest.ckpt" | "best.ckpt"): Promise<void> {
    if (this.#runDir === null) return;
    const meta: CheckpointMeta = {
      iteration: this.iteration,
      rng: this.#rng.getState(),
      adamStep: this.#optimizer.step,
      skippedSteps: this.skippedSteps,
      best: this.#best,
      secondsTrain: this.#seconds.train,
      secondsValidation: this.#seconds.validation,
      secondsData: this.#seconds.data,
      secondsWall: this.wallSeconds(),
    };
    const which = file === RUN_FILES.best ? "best" : "latest";
    await saveCheckpoint(this.#runDir.checkpoint(which), meta, this.#stateTensors());
  }

  /** Restore weights (and, unless `weightsOnly`, the training state) from a checkpoint file. */
  async loadCheckpoint(path: string, options: { weightsOnly?: boolean } = {}): Promise<void> {
    const ckpt = await loadCheckpoint<CheckpointMeta>(path);
    restoreTensors(ckpt, this.#stateTensors(), {
      optional: (name) => options.weightsOnly === true && name.startsWith("adam/"),
    });
    if (!options.weightsOnly) {
      this.iteration = ckpt.meta.iteration;
      this.#rng.setState(ckpt.meta.rng);
      this.#optimizer.step = ckpt.meta.adamStep;
      this.skippedSteps = ckpt.meta.skippedSteps ?? 0;
      this.#best = ckpt.meta.best;
      // this session's data loading adds to the earlier sessions'
      this.#seconds = {
        train: ckpt.meta.secondsTrain ?? ckpt.meta.seconds ?? 0,
        validation: ckpt.meta.secondsValidation ?? 0,
        data: (ckpt.meta.secondsData ?? 0) + this.#seconds.data,
      };
      this.#wallBefore = ckpt.meta.secondsWall ?? 0;
    }
  }

  /** Draw a batch of `n` slices (augmented) with the run's generator. */
  #batch(set: SliceSet, n: number, withLabels: boolean): { x: tf.Tensor4D; y?: tf.Tensor3D } {
    return drawBatch(this.#rng, set, n, { withLabels, augmentation: this.recipe.augmentation });
  }

  /** Run one training iteration; returns the loss terms (unweighted) and the total. */
  async step(): Promise<Record<string, number>> {
    const t0 = performance.now();
    const r = this.recipe;
    const it = this.iteration;
    const total = r.trainer.iterations;
    const lr = learningRate(r.optimizer.lr, r.optimizer.schedule, it, total);
    const ramp = r.rampUp.type === "sigmoid" ? sigmoidRampUp(it, r.rampUp.iterations ?? total) : 1;
    const batch = this.#drawStep();
    const stateBefore = this.#snapshotState();
    /** Tensors that outlive the tape: the loss terms, the lazy maps, the first step's logits. */
    const step: StepTensors = { terms: new Map(), kept: [], logits: null };
    const vars = [...this.model.trainable.values()];
    let values: Record<string, number> = {};
    let bad: [string, number] | undefined;
    try {
      const { value, grads } = tf.variableGrads(() => this.#loss(batch, ramp, step), vars);
      try {
        values = { loss: (await value.data())[0] };
        for (const [name, t] of step.terms) values[name] = (await t.data())[0];
        bad = Object.entries(values).find(([, v]) => !Number.isFinite(v));
        if (bad !== undefined && it === 0) await this.#blameFirstStep(values, step.logits);
        if (bad === undefined) {
          const names = [...this.model.trainable.keys()];
          const byName: Record<string, tf.Tensor> = {};
          vars.forEach((v, i) => (byName[names[i]] = grads[v.name]));
          this.#optimizer.apply(byName, lr);
        }
      } finally {
        tf.dispose([value, ...Object.values(grads)]);
      }
    } catch (error) {
      this.#restoreState(stateBefore); // the failed forward pass may have updated them
      tf.dispose([...stateBefore.values()]);
      throw error;
    } finally {
      tf.dispose([...step.terms.values(), ...step.kept, ...batch.tensors]);
      if (step.logits) tf.dispose(step.logits);
    }
    if (bad !== undefined) {
      // The weights were not updated; the forward pass may have left non-finite batch-norm
      // statistics behind, so they are restored too.
      this.#restoreState(stateBefore);
    }
    tf.dispose([...stateBefore.values()]);
    if (bad !== undefined) {
      if (r.trainer.nonFinite === "stop") {
        throw new NonFiniteLossError(
          `Training stopped at iteration ${it + 1}: loss term "${bad[0]}" is ${bad[1]}` +
            (await this.#runDir?.has("latest")
              ? `; the last good checkpoint is in ${this.runDir} (resume with --resume)`
              : ""),
        );
      }
      this.skippedSteps++;
    }
    for (const reg of this.regularizers) {
      callPlugin(
        regularizerRef(reg),
        { method: "onStepEnd()", expected: "no error" },
        () => reg.instance.onStepEnd?.({ iteration: it, model: this.model }),
      );
    }
    this.iteration++;
    this.#seconds.train += (performance.now() - t0) / 1000;
    values.lr = lr;
    if (r.rampUp.type !== "none") values.ramp = ramp;
    return values;
  }

  /** The step's batches, transform parameters and dropout seed, drawn in this order. */
  #drawStep(): StepBatch {
    const r = this.recipe;
    const labeled = this.#batch(this.dataset.labeled, r.trainer.labeledBatch, true);
    const useU = this.#needsUnlabeled;
    const bu = r.trainer.unlabeledBatch;
    const unlabeled = useU ? this.#batch(this.dataset.unlabeled, bu, false) : null;
    const [, h, w] = labeled.x.shape;
    const params = useU
      ? callPlugin(
        this.#plugins.transform,
        SAMPLE,
        () => this.transform.sample(this.#rng, bu, h, w),
      )
      : null;
    const dropoutSeed = this.#rng.nextUint32() % 1_000_000;
    const tensors = [labeled.x, labeled.y!, ...(unlabeled ? [unlabeled.x] : [])];
    return { x: labeled.x, y: labeled.y!, xu: unlabeled?.x ?? null, params, dropoutSeed, tensors };
  }

  /**
   * The weighted loss of one step, inside the gradient tape: the forward pass over
   * `[x_l, x_u, T(x_u)]` (or `x_l` alone), the step context, the supervised and regularizer
   * terms (each kept in `step.terms`), every plugin's result checked.
   */
  #loss(batch: StepBatch, ramp: number, step: StepTensors): tf.Scalar {
    const r = this.recipe;
    const plugins = this.#plugins;
    const xl = batch.x;
    const bl = xl.shape[0];
    const [, h, w] = xl.shape;
    const classes = this.dataset.classNames.length;
    const apply = (x: tf.Tensor4D, groups?: number[]) => {
      const logits = callPlugin(
        plugins.model,
        APPLY,
        () => this.model.apply(x, { training: true, seed: batch.dropoutSeed, groups }),
      );
      checkLogits(plugins.model, logits, [x.shape[0], h, w, classes]);
      if (this.iteration === 0) step.logits = tf.keep(logits);
      return logits;
    };
    let logitsL: tf.Tensor4D;
    let context: StepContext | null = null;
    if (batch.xu !== null) {
      const xu = batch.xu;
      const bu = xu.shape[0];
      const xt = callPlugin(
        plugins.transform,
        TRANSFORM,
        () => this.transform.apply(xu, batch.params),
      );
      const perGroup = r.trainer.batchNormStatistics === "per-group";
      const logits = apply(tf.concat([xl, xu, xt], 0), perGroup ? [bl, bu, bu] : undefined);
      const [ll, lu, lt] = tf.split(logits, [bl, bu, bu], 0) as tf.Tensor4D[];
      logitsL = ll;
      context = createStepContext({
        iteration: this.iteration,
        iterations: r.trainer.iterations,
        numClasses: classes,
        xLabeled: xl,
        yLabeled: batch.y,
        xUnlabeled: xu,
        xTransformed: xt,
        logitsLabeled: ll,
        logitsUnlabeled: lu,
        logitsTransformed: lt,
        pairing: r.pairing,
        transform: this.transform,
        transformParams: batch.params,
        model: this.model,
      }, step.kept);
    } else {
      logitsL = apply(xl);
    }
    const sup = callPlugin(plugins.supervised, LOSS, () => this.supervisedLoss(logitsL, batch.y));
    step.terms.set("sup", tf.keep(checkScalarLoss(plugins.supervised, "the loss function", sup)));
    let loss = tf.mul(sup, r.supervised.weight) as tf.Scalar;
    if (context !== null) {
      for (const reg of this.regularizers) {
        const ref = regularizerRef(reg);
        const term = callPlugin(ref, LOSS, () => reg.instance.loss(context));
        step.terms.set(reg.name, tf.keep(checkScalarLoss(ref, "loss()", term)));
        loss = tf.add(loss, tf.mul(term, r.lambda * ramp * reg.weight));
      }
    }
    return loss;
  }

  /**
   * A loss term that is not finite on the run's first step is a plugin's fault, not a
   * divergence: the model's (when its logits are not finite), else the term's plugin.
   *
   * @throws {PluginError} Naming it.
   */
  async #blameFirstStep(values: Record<string, number>, logits: tf.Tensor | null): Promise<void> {
    if (logits !== null) {
      const finite = tf.tidy(() => tf.all(tf.isFinite(logits)));
      const ok = (await finite.data())[0] === 1;
      finite.dispose();
      if (!ok) {
        throw new PluginError(
          this.#plugins.model,
          `apply() gave logits that are not finite on the first step; expected finite numbers`,
        );
      }
    }
    // the term at fault (the total is not finite because one of them is not)
    const terms = Object.entries(values).filter(([name]) => name !== "loss");
    const bad = terms.find(([, v]) => !Number.isFinite(v)) ?? ["loss", values.loss];
    const reg = this.regularizers.find((r) => r.name === bad[0]);
    const [ref, method] = reg
      ? [regularizerRef(reg), "loss()"]
      : [this.#plugins.supervised, "the loss function"];
    throw new PluginError(
      ref,
      `${method} gave ${bad[1]} on the first step (term "${bad[0]}"); expected a finite scalar`,
    );
  }

  /**
   * Predicted labels of one volume (slice by slice), with `model` (default: the student). Async:
   * the webgpu backend can read results back only asynchronously.
   */
  async predictVolume(volume: Volume, model: SegmentationModel = this.model): Promise<Uint8Array> {
    return (await predictVolume(model, volume)).labels;
  }

  /**
   * 3D Dice and HD95 per foreground class on a split (default: validation), averaged over
   * volumes (HD95 over the volumes where it is defined).
   */
  async evaluate(
    split: "validation" | "test" = "validation",
    model: SegmentationModel = this.evaluationModel(),
    options: EvaluateOptions = {},
  ): Promise<Evaluation> {
    const t0 = performance.now();
    try {
      return await this.#evaluate(split, model, options);
    } finally {
      if (split === "validation") this.#seconds.validation += (performance.now() - t0) / 1000;
    }
  }

  #evaluate(
    split: "validation" | "test",
    model: SegmentationModel,
    options: EvaluateOptions,
  ): Promise<Evaluation> {
    const volumes = split === "test" ? this.dataset.test : this.dataset.validation;
    if (!volumes || volumes.length === 0) {
      throw new UserError(`Dataset "${this.dataset.id}" has no ${split} volumes`);
    }
    return evaluateVolumes(volumes, model, this.dataset.classNames, options);
  }

  /** Wall-clock seconds of the run so far (earlier sessions of a resumed run included). */
  wallSeconds(): number {
    return this.#wallBefore + (performance.now() - this.#wallStart) / 1000;
  }

  /** Seconds so far, as `metrics.jsonl` and `summary.json` record them (rounded to 0.01 s). */
  times(): Pick<Summary, "seconds_train" | "seconds_validation" | "seconds_data" | "seconds_wall"> {
    const r = (x: number) => Math.round(x * 100) / 100;
    return {
      seconds_train: r(this.#seconds.train),
      seconds_validation: r(this.#seconds.validation),
      seconds_data: r(this.#seconds.data),
      seconds_wall: r(this.wallSeconds()),
    };
  }

  /** The network to evaluate and checkpoint as "the" result (a mean teacher's teacher). */
  evaluationModel(): SegmentationModel {
    return evaluationModelOf(this);
  }

  /**
   * Ask the run to stop after the current step: it writes `latest.ckpt` and `run()` rejects with
   * an {@linkcode InterruptedError}.
   */
  requestStop(signal: "SIGINT" | "SIGTERM" = "SIGINT"): void {
    this.#stopSignal ??= signal;
  }

  /** Train to the end (from the current iteration), validating and checkpointing on the way. */
  async run(): Promise<Summary> {
    const r = this.recipe;
    const total = r.trainer.iterations;
    const validateEvery = r.trainer.validateEvery ?? total;
    const progress = new Progress(total, { every: r.trainer.logEvery, enabled: this.#progress });
    const startIteration = this.iteration;
    /** The validation of the final weights, when the loop made it (it is not repeated). */
    let last: Evaluation | null = null;
    if (this.#runDir) this.#metricsFile = await this.#runDir.openMetrics();
    try {
      while (this.iteration < total) {
        const values = await this.step();
        await this.#appendMetrics({ iteration: this.iteration, ...values, ...this.times() });
        const shown = Object.fromEntries(
          Object.entries(values).filter(([k]) => k !== "lr" && k !== "ramp"),
        );
        progress.update(this.iteration, shown, startIteration);
        if (this.iteration % validateEvery === 0 || this.iteration === total) {
          const ev = await this.evaluate("validation");
          if (this.iteration === total) last = ev;
          await this.#appendMetrics({
            iteration: this.iteration,
            val_dice: ev.dice,
            val_dice_mean: ev.dice_mean,
          });
          progress.message(
            `iteration ${this.iteration}: validation Dice ${formatDice(ev.dice)}, mean ` +
              `${(100 * ev.dice_mean).toFixed(2)} %`,
          );
          if (ev.dice_mean > this.#best.dice_mean) {
            this.#best = { iteration: this.iteration, dice_mean: ev.dice_mean };
            await this.saveCheckpoint("best.ckpt");
          }
        }
        const every = r.trainer.checkpointEvery;
        if (every !== undefined && this.iteration % every === 0) {
          await this.saveCheckpoint("latest.ckpt");
        }
        // Training is synchronous compute: give pending events (SIGINT/SIGTERM) a turn.
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (this.#stopSignal !== null && this.iteration < total) {
          await this.saveCheckpoint("latest.ckpt");
          progress.done();
          throw new InterruptedError(
            this.#stopSignal,
            `Interrupted by ${this.#stopSignal} after iteration ${this.iteration}` +
              (this.runDir
                ? `; checkpoint written. Resume with: deno task run --resume ${this.runDir}`
                : ""),
          );
        }
      }
      progress.done();
      await this.saveCheckpoint("latest.ckpt");
      // The loop validated the final weights already (unless a resumed run had no step left).
      const final = last ?? await this.evaluate("validation");
      const evaluated = this.evaluationModel() === this.model ? "student" : "teacher";
      const student = evaluated !== "student"
        ? await this.evaluate("validation", this.model)
        : null;
      const summary: Summary = {
        method: r.method,
        dataset: this.dataset.id,
        seed: r.seed,
        iterations: this.iteration,
        ...this.times(),
        backend: this.backend,
        params: this.model.paramCount,
        evaluated,
        ...final,
        best: this.#best,
        skipped_steps: this.skippedSteps,
        environment: await runEnvironment(),
      };
      if (student) summary.student = student;
      await this.#runDir?.writeSummary(summary);
      return summary;
    } catch (error) {
      this.#metricsFile?.close();
      this.#metricsFile = null;
      // A run that fails before its first checkpoint leaves no folder behind (an interrupted
      // one has written its checkpoint).
      if (!(error instanceof InterruptedError) && await this.#runDir?.discardUnlessCheckpointed()) {
        if (error instanceof UserError) {
          error.message += ` (${this.#runDir!.path} removed: the run failed before its first ` +
            `checkpoint)`;
        }
      }
      throw error;
    } finally {
      this.#metricsFile?.close();
      this.#metricsFile = null;
    }
  }

  async #appendMetrics(record: Record<string, unknown>): Promise<void> {
    if (!this.#metricsFile) return;
    await this.#metricsFile.write(new TextEncoder().encode(JSON.stringify(record) + "\n"));
  }

  /** Free the model, the optimizer state and every plugin. */
  dispose(): void {
    for (const r of this.regularizers) r.instance.dispose?.();
    this.#optimizer.dispose();
    this.model.dispose();
  }
}

/**
 * Why `dir` cannot be resumed, if it cannot: it has no `latest.ckpt` or it is finished.
 *
 * @throws {UserError} Saying which.
 */
async function refuseResume(dir: RunDir): Promise<void> {
  try {
    await Deno.stat(dir.path);
  } catch {
    throw new UserError(
      `Cannot resume "${dir.path}": there is no such folder (a run that fails before its ` +
        `first checkpoint is removed: start it again, with --out ${dir.path} if you like)`,
    );
  }
  if (!(await dir.has("latest"))) {
    throw new UserError(
      `Cannot resume "${dir.path}": it has no ${RUN_FILES.latest} (the run stopped before ` +
        `its first checkpoint, or it is no run folder): there is nothing to resume; start the ` +
        `run again in a new folder`,
    );
  }
  if (await dir.finished()) {
    throw new UserError(
      `"${dir.path}" is a finished run (it has ${RUN_FILES.summary}): there is nothing to resume`,
    );
  }
}
