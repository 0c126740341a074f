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
import type { SegmentationDataset, Volume } from "./dataset.ts";
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
import { callPlugin } from "./plugin_errors.ts";
import { type LossParts, regularizerRef, sigmoidRampUp, type StepTensors } from "./loss_terms.ts";
import { lossAndGatedUpdate, lossAndUpdate, type UpdateTarget } from "./update.ts";
import { Progress } from "./progress.ts";
import { loadRecipe, type Recipe } from "./recipe.ts";
import { Rng, type RngState } from "./rng.ts";
import { runEnvironment } from "./provenance.ts";
import { type ClockState, RunClock } from "./run_clock.ts";
import { RUN_FILES, RunDir, type Summary } from "./run_dir.ts";
import { setUpRun, type TrainerOptions, type TrainerParts } from "./setup.ts";
import type { InvertibleTransform } from "./transform.ts";
import type { SupervisedLoss } from "./loss.ts";
import { drawStep } from "./batch.ts";
import { firstNonFinite, readbackMode, type ReadStep, StepQueue } from "./step_readback.ts";
import {
  deferRunningStatistics,
  discardRunningStatistics,
} from "../runtime/kernels/bn_running_stats.ts";
import { ADAM_MANY_KERNEL } from "../runtime/kernels/adam_many.ts";
import { kernelMode } from "../runtime/tfjs_internals.ts";

export type { TrainerOptions } from "./setup.ts";
export type { Summary } from "./run_dir.ts";
export type { ReadStep } from "./step_readback.ts";
export { InterruptedError, NonFiniteLossError } from "./errors.ts";
export { sigmoidRampUp } from "./loss_terms.ts";

/** The header of the trainer's checkpoints (with the times of {@linkcode RunClock}). */
interface CheckpointMeta extends ClockState {
  iteration: number;
  rng: RngState;
  adamStep: number;
  skippedSteps?: number;
  best: { iteration: number; dice_mean: number };
}

/**
 * The evaluation of the final weights (the summary's): on the network's grid and on each
 * volume's source grid; a source file that cannot be read again leaves the source-grid scores
 * out (`source_grid_missing` says why) rather than failing a finished training.
 */
const FINAL_EVALUATION: EvaluateOptions = { sourceGrid: "try" };

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
  /** Where the run's seconds went (earlier sessions of a resumed run included). */
  readonly #clock: RunClock;
  #metricsFile: Deno.FsFile | null = null;
  /** What the step's loss is computed with (the networks, the plugins as failures name them). */
  readonly #parts: LossParts;
  /** When loss terms are read back (`trainer.readback`, resolved for this backend). */
  readonly readback: "step" | "log";
  /** Steps whose loss terms wait to be read ({@linkcode Trainer.flushSteps}). */
  readonly #queue = new StepQueue();

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
    this.#clock = new RunClock(init.wallStart, init.secondsData);
    this.#rng = new Rng(init.recipe.seed * 7919 + 17);
    const o = init.recipe.optimizer;
    this.#optimizer = new Adam(init.model.trainable, {
      beta1: o.beta1,
      beta2: o.beta2,
      epsilon: o.epsilon,
      weightDecay: o.weightDecay,
      scope: init.scope,
    });
    this.#parts = {
      recipe: init.recipe,
      model: init.model,
      transform: init.transform,
      regularizers: init.regularizers,
      supervisedLoss: init.supervisedLoss,
      numClasses: init.dataset.classNames.length,
      plugins: {
        model: { kind: "model", id: init.recipe.model.type, entry: "model" },
        transform: { kind: "transform", id: init.recipe.transform.type, entry: "transform" },
        supervised: { kind: "loss", id: init.recipe.supervised.type, entry: "supervised" },
      },
    };
    this.#needsUnlabeled = init.regularizers.some((r) => r.instance.needsUnlabeled) &&
      init.recipe.trainer.unlabeledBatch > 0;
    // the fused Adam takes the gate; elsewhere the update composes tf.where (any backend)
    const fusedAdam = kernelMode() !== "builtin" &&
      tf.getKernel(ADAM_MANY_KERNEL, init.backend) !== undefined;
    this.readback = readbackMode(init.recipe.trainer.readback, {
      backend: init.backend,
      gatedOnDevice: fusedAdam,
    });
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
    await dir.refuseResume();
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

  /**
   * Save a checkpoint (`latest.ckpt` or `best.ckpt`) in the run directory. Steps whose loss terms
   * wait to be read are read first ({@linkcode Trainer.flushSteps}), so that the checkpoint's
   * step and skipped-step counts are settled (`run()` reads them itself before, for their
   * metrics lines).
   */
  async saveCheckpoint(file: "latest.ckpt" | "best.ckpt"): Promise<void> {
    if (this.#runDir === null) return;
    await this.flushSteps();
    const meta: CheckpointMeta = {
      iteration: this.iteration,
      rng: this.#rng.getState(),
      adamStep: this.#optimizer.step,
      skippedSteps: this.skippedSteps,
      best: this.#best,
      ...this.#clock.state(),
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
      this.#clock.restore(ckpt.meta);
    }
  }

  /**
   * Run one training iteration; returns the loss terms (unweighted) and the total. Reads the
   * terms back (with `trainer.readback: log`, every step still waiting too): a loop that should
   * not wait for the GPU every step calls {@linkcode Trainer.queueStep} and
   * {@linkcode Trainer.flushSteps}.
   */
  async step(): Promise<Record<string, number>> {
    await this.queueStep();
    const read = await this.flushSteps();
    const last = read[read.length - 1];
    return { ...last.values, ...last.host };
  }

  /**
   * Run one training iteration and queue its loss terms. With `trainer.readback: step` (and on
   * the run's first iteration, whose non-finite terms blame a plugin) the terms are read now and
   * a non-finite step is handled now; with `log` they stay on the device, the update applied
   * only where every term is finite (decided on the device), until {@linkcode Trainer.flushSteps}.
   */
  async queueStep(): Promise<void> {
    const t0 = performance.now();
    const r = this.recipe;
    const it = this.iteration;
    const total = r.trainer.iterations;
    const lr = learningRate(r.optimizer.lr, r.optimizer.schedule, it, total);
    const ramp = r.rampUp.type === "sigmoid" ? sigmoidRampUp(it, r.rampUp.iterations ?? total) : 1;
    const batch = drawStep(this.#rng, {
      recipe: r,
      dataset: this.dataset,
      transform: this.transform,
      transformPlugin: this.#parts.plugins.transform,
      useUnlabeled: this.#needsUnlabeled,
    });
    const deferred = this.readback === "log" && it > 0;
    // references to the statistics' data, not copies: the step assigns new tensors
    const stateBefore = this.#snapshotState();
    /** Tensors that outlive the tape: the loss terms, the lazy maps, the first step's logits. */
    const step: StepTensors = { terms: new Map(), kept: [], logits: null, iteration: it, ramp };
    let terms: { names: string[]; device: tf.Tensor | null; values: number[] | null };
    try {
      if (deferred) deferRunningStatistics();
      terms = deferred
        ? lossAndGatedUpdate(this.#updateTarget(), batch, step, lr, stateBefore)
        : await lossAndUpdate(this.#updateTarget(), batch, step, lr);
    } catch (error) {
      discardRunningStatistics();
      this.#restoreState(stateBefore); // the failed forward pass may have updated them
      tf.dispose([...stateBefore.values()]);
      throw error;
    } finally {
      tf.dispose([...step.terms.values(), ...step.kept, ...batch.tensors]);
      if (step.logits) tf.dispose(step.logits);
    }
    const bad = terms.values === null
      ? undefined
      : firstNonFinite(Object.fromEntries(terms.names.map((n, i) => [n, terms.values![i]])));
    if (bad !== undefined) {
      // The weights were not updated; the forward pass may have left non-finite batch-norm
      // statistics behind, so they are restored too.
      this.#restoreState(stateBefore);
    }
    tf.dispose([...stateBefore.values()]);
    if (bad !== undefined) await this.#skip(bad, it);
    for (const reg of this.regularizers) {
      callPlugin(
        regularizerRef(reg),
        { method: "onStepEnd()", expected: "no error" },
        () => reg.instance.onStepEnd?.({ iteration: it, model: this.model }),
      );
    }
    this.iteration++;
    this.#clock.addTrain((performance.now() - t0) / 1000);
    const host: Record<string, number> = { lr };
    if (r.rampUp.type !== "none") host.ramp = ramp;
    this.#queue.push({ iteration: it, ...terms, host, times: this.times() });
  }

  /**
   * Read the queued steps' loss terms (one readback for all of them) and settle the steps whose
   * update was gated on the device: a non-finite one stops the run (`trainer.nonFinite: stop`,
   * naming the first such iteration) or is counted in `skippedSteps`, and Adam's step count is
   * corrected (the steps between it and this read used a count one too high). `each` sees every
   * read step in order before a stop is thrown (the run's metrics line and progress line).
   */
  async flushSteps(each?: (read: ReadStep) => Promise<void> | void): Promise<ReadStep[]> {
    if (this.#queue.size === 0) return [];
    const t0 = performance.now();
    const read = await this.#queue.read();
    this.#clock.addTrain((performance.now() - t0) / 1000);
    for (const s of read) {
      const bad = s.deferred ? firstNonFinite(s.values) : undefined;
      if (bad !== undefined) {
        this.#optimizer.step--;
        await this.#skip(bad, s.iteration);
      }
      await each?.(s);
    }
    return read;
  }

  /** What a step's loss and update work on. */
  #updateTarget(): UpdateTarget {
    return { model: this.model, optimizer: this.#optimizer, parts: this.#parts };
  }

  /**
   * A step (0-based `iteration`) whose loss term `bad` is not finite: stop the run
   * (`trainer.nonFinite: stop`) or count it as skipped.
   */
  async #skip(bad: [string, number], iteration: number): Promise<void> {
    if (this.recipe.trainer.nonFinite === "stop") {
      this.#queue.dispose();
      throw new NonFiniteLossError(
        `Training stopped at iteration ${iteration + 1}: loss term "${bad[0]}" is ` +
          `${bad[1]}` +
          (await this.#runDir?.has("latest")
            ? `; the last good checkpoint is in ${this.runDir} (resume with --resume)`
            : ""),
      );
    }
    this.skippedSteps++;
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
    const volumes = split === "test" ? this.dataset.test : this.dataset.validation;
    if (!volumes || volumes.length === 0) {
      throw new UserError(`Dataset "${this.dataset.id}" has no ${split} volumes`);
    }
    const t0 = performance.now();
    try {
      return await evaluateVolumes(volumes, model, this.dataset.classNames, options);
    } finally {
      if (split === "validation") this.#clock.addValidation((performance.now() - t0) / 1000);
    }
  }

  /** Wall-clock seconds of the run so far (earlier sessions of a resumed run included). */
  wallSeconds(): number {
    return this.#clock.wallSeconds();
  }

  /** Seconds so far, as `metrics.jsonl` and `summary.json` record them (rounded to 0.01 s). */
  times(): Pick<Summary, "seconds_train" | "seconds_validation" | "seconds_data" | "seconds_wall"> {
    return this.#clock.times();
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
    /** The read steps' metrics lines and progress (in order, as each step's terms are read). */
    const record = async (s: ReadStep) => {
      await this.#appendMetrics({
        iteration: s.iteration + 1,
        ...s.values,
        ...s.host,
        ...s.times,
      });
      progress.update(s.iteration + 1, s.values, startIteration);
    };
    try {
      const every = r.trainer.checkpointEvery;
      while (this.iteration < total) {
        await this.queueStep();
        const validating = this.iteration % validateEvery === 0 || this.iteration === total;
        const checkpointing = every !== undefined && this.iteration % every === 0;
        // with readback: log, the terms are read here only (one readback for the steps since)
        if (
          this.readback === "step" || this.iteration % r.trainer.logEvery === 0 || validating ||
          checkpointing
        ) {
          await this.flushSteps(record);
        }
        if (validating) {
          // the final weights are scored on the volumes' source grids too (the summary's)
          const ev = await this.evaluate(
            "validation",
            undefined,
            this.iteration === total ? FINAL_EVALUATION : {},
          );
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
        if (checkpointing) await this.saveCheckpoint("latest.ckpt");
        // Training is synchronous compute: give pending events (SIGINT/SIGTERM) a turn.
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (this.#stopSignal !== null && this.iteration < total) {
          await this.flushSteps(record);
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
      const final = last ?? await this.evaluate("validation", undefined, FINAL_EVALUATION);
      const evaluated = this.evaluationModel() === this.model ? "student" : "teacher";
      const student = evaluated !== "student"
        ? await this.evaluate("validation", this.model, FINAL_EVALUATION)
        : null;
      // generated volumes (phantom) have no source grid: nothing to say about them
      if (final.source_grid_missing && this.dataset.validation.some((v) => v.source)) {
        console.error(`note: no source-grid scores: ${final.source_grid_missing}`);
      }
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
      // steps that ran but were not read yet still get their metrics lines (nothing lost when,
      // say, a validation fails); a read that fails too leaves them out
      if (!(error instanceof NonFiniteLossError)) await this.flushSteps(record).catch(() => {});
      this.#queue.dispose();
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

  /** Free the model, the optimizer state, every plugin and the steps not read. */
  dispose(): void {
    this.#queue.dispose();
    for (const r of this.regularizers) r.instance.dispose?.();
    this.#optimizer.dispose();
    this.model.dispose();
    this.#runDir?.unlock();
  }
}
