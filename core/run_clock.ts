/**
 * A run's clock: the seconds spent in training steps, validations and data loading, and the
 * wall-clock seconds, summed over every session of the run (a resumed run goes on from its
 * checkpoint's times), as `metrics.jsonl`, `summary.json` and the checkpoints record them.
 *
 * @module
 */

/** The times a checkpoint holds (`seconds`: the training seconds of older checkpoints). */
export interface ClockState {
  secondsTrain?: number;
  seconds?: number;
  secondsValidation?: number;
  secondsData?: number;
  secondsWall?: number;
}

/** The times as `metrics.jsonl` and `summary.json` record them (rounded to 0.01 s). */
export interface RunTimes {
  seconds_train: number;
  seconds_validation: number;
  seconds_data: number;
  seconds_wall: number;
}

/** Where a run's seconds went, over every session of the run. */
export class RunClock {
  /** Seconds of training steps, validations and data loading, over every session of the run. */
  #seconds = { train: 0, validation: 0, data: 0 };
  /** Wall seconds of earlier sessions (a resumed run), and when this one started. */
  #wallBefore = 0;
  readonly #wallStart: number;

  /**
   * @param wallStart `performance.now()` when this session started.
   * @param secondsData Seconds this session spent loading the dataset.
   */
  constructor(wallStart: number, secondsData: number) {
    this.#wallStart = wallStart;
    this.#seconds.data = secondsData;
  }

  /** Add the seconds of a training step. */
  addTrain(seconds: number): void {
    this.#seconds.train += seconds;
  }

  /** Add the seconds of a validation. */
  addValidation(seconds: number): void {
    this.#seconds.validation += seconds;
  }

  /** Wall-clock seconds of the run so far (earlier sessions of a resumed run included). */
  wallSeconds(): number {
    return this.#wallBefore + (performance.now() - this.#wallStart) / 1000;
  }

  /** Seconds so far, rounded to 0.01 s. */
  times(): RunTimes {
    const r = (x: number) => Math.round(x * 100) / 100;
    return {
      seconds_train: r(this.#seconds.train),
      seconds_validation: r(this.#seconds.validation),
      seconds_data: r(this.#seconds.data),
      seconds_wall: r(this.wallSeconds()),
    };
  }

  /** What a checkpoint records. */
  state(): Required<Omit<ClockState, "seconds">> {
    return {
      secondsTrain: this.#seconds.train,
      secondsValidation: this.#seconds.validation,
      secondsData: this.#seconds.data,
      secondsWall: this.wallSeconds(),
    };
  }

  /** Go on from a checkpoint's times; this session's data loading adds to the earlier ones'. */
  restore(state: ClockState): void {
    this.#seconds = {
      train: state.secondsTrain ?? state.seconds ?? 0,
      validation: state.secondsValidation ?? 0,
      data: (state.secondsData ?? 0) + this.#seconds.data,
    };
    this.#wallBefore = state.secondsWall ?? 0;
  }
}
