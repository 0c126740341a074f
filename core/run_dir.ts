/**
 * A run folder: the one place that knows its file names (`recipe.yaml`, `run.json`,
 * `splits.json`, `metrics.jsonl`, `summary.json`, `latest.ckpt`, `best.ckpt`), reads and writes
 * its info and summary, and tells whether it holds a run, a finished one, or a checkpoint.
 *
 * @module
 */
import { gunzipSync } from "node:zlib";
import { dirname, join, resolve } from "node:path";
import { YAML } from "../deps.ts";
import { writeFileAtomic } from "./checkpoint.ts";
import { UserError } from "./errors.ts";
import type { Evaluation } from "./evaluate.ts";
import type { RunEnvironment } from "./provenance.ts";
import type { Recipe } from "./recipe.ts";

/** The files of a run folder, by role. */
export const RUN_FILES = {
  /** The resolved recipe the run trains (what `--resume`, `eval` and `predict` load). */
  recipe: "recipe.yaml",
  /** {@linkcode RunInfo}. */
  info: "run.json",
  /** The dataset's split (which patients are labeled, unlabeled, validation). */
  splits: "splits.json",
  /** One JSON line per iteration and validation. */
  metrics: "metrics.jsonl",
  /**
   * `metrics.jsonl` gzipped, as `results/` keeps finished runs (a quarter of the size; read in its
   * place by {@linkcode RunDir.readMetrics} where there is no `metrics.jsonl`).
   */
  metricsGz: "metrics.jsonl.gz",
  /** The final evaluation: a finished run has one. */
  summary: "summary.json",
  /** The checkpoint `--resume` continues from. */
  latest: "latest.ckpt",
  /** The weights of the best validation. */
  best: "best.ckpt",
  /**
   * Locked (an OS file lock, which the OS releases when the process ends, however it ends) by
   * the process training into the folder, so that a second `run --resume` or `--out` of the same
   * folder is refused instead of overwriting its checkpoints and cutting its metrics; removed
   * when the run ends.
   */
  lock: "run.lock",
} as const;

/** A run's checkpoints. */
export type CheckpointName = "best" | "latest";

/** What `run.json` in a run directory holds. */
export interface RunInfo {
  /** Directory relative dataset paths of the recipe are resolved against. */
  baseDir: string;
  /** The recipe file the run came from, when known. */
  recipe: string | null;
  /** The dataset's class names, index 0 = background (runs record them since `predict` exists). */
  classNames?: string[];
}

/** The files that make a folder a run (what a new run would overwrite or append to). */
const HOLDS_A_RUN = [
  RUN_FILES.summary,
  RUN_FILES.latest,
  RUN_FILES.best,
  RUN_FILES.metrics,
  RUN_FILES.metricsGz,
];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** What `summary.json` holds. */
export interface Summary extends Evaluation {
  /** The recipe's `method`. */
  method: string;
  /** The dataset plugin's id. */
  dataset: string;
  /** The run's seed. */
  seed: number;
  /** Iterations trained. */
  iterations: number;
  /** Seconds spent in training steps (forward, backward, optimizer update). */
  seconds_train: number;
  /** Seconds spent evaluating on the validation volumes (during and at the end of training). */
  seconds_validation: number;
  /** Seconds spent loading (or generating) the dataset, cache reads included. */
  seconds_data: number;
  /**
   * Wall-clock seconds of the run, from the start of {@linkcode Trainer.create} to the summary
   * (backend start-up, data, training, validations, checkpoints), summed over resumed sessions.
   */
  seconds_wall: number;
  /** The tfjs backend the run trained on. */
  backend: string;
  /** Trainable scalars of the student. */
  params: number;
  /** Best validation mean Dice and its iteration (the `best.ckpt` weights). */
  best: { iteration: number; dice_mean: number };
  /** Steps skipped because a loss term was not finite (`trainer.nonFinite: skip`). */
  skipped_steps: number;
  /** Which network `dice` describes (`student`, or `teacher` for mean teacher). */
  evaluated: string;
  /** The other network's evaluation, where there is one (mean teacher's student). */
  student?: Evaluation;
  /** The Deno and tfjs versions and the framework's commit of the session that finished it. */
  environment: RunEnvironment;
}

/** What `run.lock` says of the process that holds it (for the message of one refused). */
export interface LockHolder {
  pid: number;
  started: string;
}

/** `process 123 (since 2026-...)`, or `another process` when the lock file says nothing yet. */
export function describeHolder(holder: Partial<LockHolder>): string {
  return holder.pid === undefined
    ? "another process"
    : `process ${holder.pid} (since ${holder.started})`;
}

/** A run folder (which need not exist yet). */
export class RunDir {
  #lock: Deno.FsFile | null = null;

  /** @param path The folder. */
  constructor(readonly path: string) {}

  /** `<recipe.output.dir>/<name>/<time>-seed<N>`: where a run goes without `--out`. */
  static forRecipe(recipe: Recipe, now: Date = new Date()): RunDir {
    const p = (n: number) => String(n).padStart(2, "0");
    const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-` +
      `${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
    const name = (recipe.name ?? recipe.method).replace(/[^A-Za-z0-9._-]+/g, "_");
    return new RunDir(`${recipe.output.dir}/${name}/${stamp}-seed${recipe.seed}`);
  }

  /** The path of one of its files. */
  file(role: keyof typeof RUN_FILES): string {
    return join(this.path, RUN_FILES[role]);
  }

  /** The path of a checkpoint. */
  checkpoint(which: CheckpointName): string {
    return this.file(which);
  }

  /** Whether one of its files exists. */
  has(role: keyof typeof RUN_FILES): Promise<boolean> {
    return exists(this.file(role));
  }

  /** Whether it holds a finished run (`summary.json`). */
  async finished(): Promise<boolean> {
    try {
      return (await Deno.stat(this.file("summary"))).isFile;
    } catch {
      return false;
    }
  }

  /** `run.json` as written, or `null` when there is none (or it cannot be read). */
  async readInfo(): Promise<Partial<RunInfo> | null> {
    try {
      return JSON.parse(await Deno.readTextFile(this.file("info"))) as Partial<RunInfo>;
    } catch {
      return null;
    }
  }

  /** `run.json`, with defaults for runs without one (`baseDir`: the folder itself). */
  async info(): Promise<RunInfo> {
    return (await this.readInfo() as RunInfo | null) ?? { baseDir: this.path, recipe: null };
  }

  /**
   * The class names of the run: from `run.json` (runs record them since `predict` exists), else
   * the foreground classes of `summary.json` or of the last validation in `metrics.jsonl`.
   *
   * @throws {UserError} When none of them tells.
   */
  async classNames(): Promise<string[]> {
    const info = await this.readInfo();
    if (Array.isArray(info?.classNames) && info.classNames.length > 1) return info.classNames;
    const summary = await this.readSummary<{ dice?: unknown }>();
    if (summary?.dice && typeof summary.dice === "object") {
      return ["background", ...Object.keys(summary.dice)];
    }
    const metrics = await this.readMetrics();
    if (metrics !== null) {
      const lines = metrics.split("\n");
      for (const line of lines.reverse()) {
        if (!line.includes("val_dice")) continue;
        try {
          const dice = JSON.parse(line).val_dice;
          if (dice && typeof dice === "object") return ["background", ...Object.keys(dice)];
        } catch {
          // a cut line
        }
      }
    }
    throw new UserError(
      `Cannot tell the classes of "${this.path}": neither ${RUN_FILES.info}, ` +
        `${RUN_FILES.summary} nor ${RUN_FILES.metrics} names them`,
    );
  }

  /**
   * The text of `metrics.jsonl`, else of `metrics.jsonl.gz` unzipped (finished runs in
   * `results/` are kept gzipped), or `null` when the run has neither.
   */
  async readMetrics(): Promise<string | null> {
    try {
      return await Deno.readTextFile(this.file("metrics"));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    let gz: Uint8Array;
    try {
      gz = await Deno.readFile(this.file("metricsGz"));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
    return new TextDecoder().decode(gunzipSync(gz));
  }

  /** `summary.json` parsed (unchecked), or `null` when there is none. */
  async readSummary<T = Record<string, unknown>>(): Promise<T | null> {
    try {
      return JSON.parse(await Deno.readTextFile(this.file("summary"))) as T;
    } catch {
      return null;
    }
  }

  /** Write `summary.json` (atomically: it marks the run finished). */
  async writeSummary(summary: unknown): Promise<void> {
    await writeFileAtomic(this.file("summary"), JSON.stringify(summary, null, 2) + "\n");
  }

  /**
   * Why the run cannot be resumed, if it cannot: the folder does not exist, has no
   * `latest.ckpt`, or is finished.
   *
   * @throws {UserError} Saying which.
   */
  async refuseResume(): Promise<void> {
    try {
      await Deno.stat(this.path);
    } catch {
      throw new UserError(
        `Cannot resume "${this.path}": there is no such folder (a run that fails before its ` +
          `first checkpoint is removed: start it again, with --out ${this.path} if you like)`,
      );
    }
    if (!(await this.has("latest"))) {
      throw new UserError(
        `Cannot resume "${this.path}": it has no ${RUN_FILES.latest} (the run stopped before ` +
          `its first checkpoint, or it is no run folder): there is nothing to resume; start the ` +
          `run again in a new folder`,
      );
    }
    if (await this.finished()) {
      throw new UserError(
        `"${this.path}" is a finished run (it has ${RUN_FILES.summary}): there is nothing to resume`,
      );
    }
  }

  /**
   * Refuse a folder that already holds a run: its summary and checkpoints would be replaced and
   * its metrics appended to. (A folder left by a run that died before writing any of them, e.g.
   * while loading data, holds nothing to lose and is reused.)
   *
   * @throws {UserError} Naming `--resume` for an unfinished run, a new folder for either.
   */
  async refuseExisting(): Promise<void> {
    const dir = this.path;
    const found: string[] = [];
    for (const f of HOLDS_A_RUN) {
      // absent (or unreadable: the run reports that when it writes)
      if (await exists(join(dir, f))) found.push(f);
    }
    if (found.length === 0) return;
    if (found.includes(RUN_FILES.summary)) {
      throw new UserError(
        `"${dir}" already holds a finished run (${found.join(", ")}); runs are never ` +
          `overwritten: give --out a new folder (deno task eval ${dir} re-evaluates this one)`,
      );
    }
    throw new UserError(
      `"${dir}" already holds a run (${found.join(", ")}); runs are never overwritten: ` +
        `continue it with deno task run --resume ${dir}, or give --out a new folder`,
    );
  }

  /**
   * Create the folder and write what a run starts from: `recipe.yaml` (`resolved`),
   * `splits.json` and `run.json`.
   *
   * @throws {UserError} When the folder cannot be written.
   */
  async start(init: {
    resolved: unknown;
    splits: unknown;
    baseDir: string;
    recipeFile?: string;
    classNames: string[];
    /** The run is resumed: the folder holds it already (else it must hold no run). */
    resuming?: boolean;
  }): Promise<void> {
    const dir = this.path;
    try {
      await Deno.mkdir(dir, { recursive: true });
      const probe = join(dir, ".write-test");
      await Deno.writeTextFile(probe, "ok");
      await Deno.remove(probe);
    } catch (error) {
      throw new UserError(`Cannot write the run directory "${dir}": ${(error as Error).message}`);
    }
    await this.lock();
    try {
      // checked again under the lock: another process may have started or finished it since
      if (init.resuming) await this.refuseResume();
      else await this.refuseExisting();
    } catch (error) {
      this.unlock();
      throw error;
    }
    await Deno.writeTextFile(this.file("recipe"), YAML.stringify(init.resolved));
    await Deno.writeTextFile(this.file("splits"), JSON.stringify(init.splits, null, 2));
    const info = {
      baseDir: await realFolder(init.baseDir, init.recipeFile),
      recipe: init.recipeFile ?? null,
      classNames: init.classNames,
    };
    await Deno.writeTextFile(this.file("info"), JSON.stringify(info, null, 2) + "\n");
  }

  /**
   * Take `run.lock` for this process (see {@linkcode RUN_FILES}.lock); {@linkcode RunDir.unlock}
   * gives it back.
   *
   * @throws {UserError} When another process holds it: it is training into this folder.
   */
  async lock(): Promise<void> {
    if (this.#lock !== null) return;
    const file = this.file("lock");
    let handle: Deno.FsFile;
    try {
      // write-only: a folder that may be written but not read still runs this far
      handle = await Deno.open(file, { write: true, create: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) throw error; // the launcher names the grant
      throw new UserError(
        `Cannot write the run directory "${this.path}": ${(error as Error).message}`,
      );
    }
    if (!(await handle.tryLock(true))) {
      handle.close();
      throw new UserError(
        `"${this.path}" is being trained by ${
          describeHolder(await this.#readHolder())
        }: it holds ` +
          `${RUN_FILES.lock}. Two runs in ` +
          `one folder would overwrite each other's checkpoints and metrics; wait for it to end, ` +
          `or stop it (SIGINT or SIGTERM write a checkpoint) and resume then`,
      );
    }
    const holder: LockHolder = { pid: Deno.pid, started: new Date().toISOString() };
    await handle.truncate(0);
    await handle.write(new TextEncoder().encode(JSON.stringify(holder) + "\n"));
    this.#lock = handle;
  }

  /**
   * Whether another process trains into the folder now (holds `run.lock`), and which: its pid and
   * start time as it wrote them (empty while it writes them), or `null` when none does.
   */
  async lockHolder(): Promise<Partial<LockHolder> | null> {
    if (this.#lock !== null) return null; // this object's own
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(this.file("lock"), { read: true }); // to look needs no write grant
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
    try {
      if (await handle.tryLock(true)) return null; // left by a process that is gone
    } finally {
      handle.close();
    }
    return await this.#readHolder();
  }

  /** What `run.lock` says of its holder; empty while it is being written. */
  async #readHolder(): Promise<Partial<LockHolder>> {
    try {
      return JSON.parse(await Deno.readTextFile(this.file("lock"))) as Partial<LockHolder>;
    } catch {
      return {};
    }
  }

  /** Give back `run.lock` (and remove the file); nothing when this object does not hold it. */
  unlock(): void {
    if (this.#lock === null) return;
    try {
      Deno.removeSync(this.file("lock"));
    } catch {
      // removed with the folder (a run discarded before its first checkpoint)
    }
    this.#lock.close(); // closing releases the OS lock
    this.#lock = null;
  }

  /** Open `metrics.jsonl` to append to. */
  openMetrics(): Promise<Deno.FsFile> {
    return Deno.open(this.file("metrics"), { append: true, create: true });
  }

  /**
   * Cut `metrics.jsonl` back to the records of iterations up to `iteration` (a resumed run goes
   * on from its checkpoint's iteration; lines cut by a crash are dropped).
   */
  async cutMetrics(iteration: number): Promise<void> {
    const metrics = this.file("metrics");
    let text = "";
    try {
      text = await Deno.readTextFile(metrics);
    } catch {
      // no metrics yet
    }
    const kept = text.split("\n").filter((line) => {
      if (line.trim() === "") return false;
      try {
        return (JSON.parse(line) as { iteration: number }).iteration <= iteration;
      } catch {
        return false; // a line cut by a crash
      }
    });
    await writeFileAtomic(metrics, kept.map((l) => l + "\n").join(""));
  }

  /**
   * Remove a run that failed before its first checkpoint: the files a run writes, then the
   * folder when nothing else is in it, so that the same `--out` starts afresh. A folder with a
   * checkpoint (`latest.ckpt` or `best.ckpt`) is left as it is.
   *
   * @returns Whether the run's files were removed.
   */
  async discardUnlessCheckpointed(): Promise<boolean> {
    if (await this.has("latest") || await this.has("best")) return false;
    for (const role of ["metrics", "info", "splits", "recipe", "summary", "lock"] as const) {
      try {
        await Deno.remove(this.file(role));
      } catch {
        // not written
      }
    }
    try {
      await Deno.remove(this.path); // only when empty
    } catch {
      // other files of the user's: the folder stays
    }
    return true;
  }
}

/**
 * The real path of `baseDir`, found through the recipe file inside it when there is one: a
 * least-privilege run may read the recipe file but not list its folder.
 */
async function realFolder(baseDir: string, recipeFile?: string): Promise<string> {
  if (recipeFile !== undefined && resolve(dirname(recipeFile)) === resolve(baseDir)) {
    try {
      return dirname(await Deno.realPath(recipeFile));
    } catch {
      // gone or unreadable: fall through
    }
  }
  try {
    return await Deno.realPath(baseDir);
  } catch {
    return resolve(baseDir);
  }
}
