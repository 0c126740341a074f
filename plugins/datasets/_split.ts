/**
 * Seeded patient splits shared by the file-based dataset plugins: which patients are labeled,
 * unlabeled, validation and test. Slices of one patient never cross splits.
 *
 * @module
 */
import { z } from "../../deps.ts";
import { UserError } from "../../core/errors.ts";
import { Rng } from "../../core/rng.ts";

/** Patient counts of each split, as given in a recipe. */
export interface SplitOptions {
  /** Labeled training patients, or `all` of the training pool (full supervision). */
  labeled: number | "all";
  /** Unlabeled training patients. @default all training patients not labeled */
  unlabeled?: number;
  /**
   * Validation patients: drawn from the dataset's own validation list when it has one (e.g.
   * SSL4MIS's `val.list`), else from the training pool. @default the dataset's
   */
  validation?: number;
  /** Test patients, drawn like `validation`. @default the dataset's */
  test?: number;
}

/**
 * The strict schema of {@linkcode SplitOptions}, with `labeled` defaulting to
 * `defaultLabeled`.
 */
export function splitOptionsSchema(
  defaultLabeled: number,
): z.ZodType<SplitOptions, z.ZodTypeDef, unknown> {
  return z.object({
    labeled: z.union([
      z.number().int().min(1, "split.labeled must be at least 1"),
      z.literal("all"),
    ]).default(defaultLabeled),
    unlabeled: z.number().int().min(0, "split.unlabeled must not be negative").optional(),
    validation: z.number().int().min(1, "split.validation must be at least 1").optional(),
    test: z.number().int().min(0, "split.test must not be negative").optional(),
  }).strict();
}

/** The patients of each split, each list sorted. */
export interface PatientSplit {
  labeled: string[];
  unlabeled: string[];
  validation: string[];
  test: string[];
}

/** What {@linkcode splitPatients} draws from. */
export interface SplitRequest {
  /** Dataset id, for error messages. */
  datasetId: string;
  /** Training patients (also the source of validation / test ones without their own list). */
  pool: string[];
  /** The dataset's predefined validation patients, if any. */
  validationPool?: string[];
  /** The dataset's predefined test patients, if any. */
  testPool?: string[];
  /** The requested counts. */
  split: SplitOptions;
  /** Validation patients drawn from `pool` when there is no `validationPool`. @default {0} */
  defaultValidation?: number;
  /** Test patients drawn from `pool` when there is no `testPool`. @default {0} */
  defaultTest?: number;
  /** Explicit labeled patients (instead of a seeded draw of `split.labeled`). */
  labeledPatients?: string[];
  /** The split's seed. */
  seed: number;
}

const sorted = (ids: Iterable<string>) => [...new Set(ids)].sort();

/**
 * Split patients with a seeded shuffle. Validation and test patients are drawn first (from
 * their own lists when given), then the labeled patients and then the unlabeled ones from the
 * rest of the pool: the labeled set of a seed does not depend on the unlabeled count.
 *
 * @example
 * ```ts
 * import { splitPatients } from "./_split.ts";
 * const s = splitPatients({
 *   datasetId: "x", pool: ["a", "b", "c", "d"], validationPool: ["v"],
 *   split: { labeled: 1, unlabeled: 2 }, seed: 1,
 * });
 * s.validation; // ["v"]
 * s.labeled.length + s.unlabeled.length; // 3
 * ```
 *
 * @throws {UserError} When a count exceeds the patients available, or a `labeledPatients` id is
 *   unknown or held out.
 */
export function splitPatients(request: SplitRequest): PatientSplit {
  const { datasetId, split } = request;
  const fail = (message: string) =>
    new UserError(`Cannot split dataset "${datasetId}": ${message}`);
  const root = new Rng(request.seed);
  const heldOutRng = root.fork();
  const trainRng = root.fork();
  const pool = heldOutRng.shuffle(sorted(request.pool));
  const taken = new Set<string>();
  const draw = (
    name: "validation" | "test",
    own: string[] | undefined,
    requested: number | undefined,
    fallback: number,
  ): string[] => {
    if (own) {
      const candidates = sorted(own).filter((p) => !taken.has(p));
      if (requested === undefined) return candidates;
      if (requested > candidates.length) {
        throw fail(
          `split.${name} is ${requested}, but the dataset's ${name} list has ` +
            `${candidates.length} patients`,
        );
      }
      return heldOutRng.shuffle(candidates).slice(0, requested);
    }
    const count = requested ?? fallback;
    const candidates = pool.filter((p) => !taken.has(p));
    if (count > candidates.length) {
      throw fail(`split.${name} is ${count}, but only ${candidates.length} patients are left`);
    }
    return candidates.slice(0, count);
  };
  const validation = draw(
    "validation",
    request.validationPool,
    split.validation,
    request.defaultValidation ?? 0,
  );
  validation.forEach((p) => taken.add(p));
  const test = draw("test", request.testPool, split.test, request.defaultTest ?? 0);
  test.forEach((p) => taken.add(p));

  const train = trainRng.shuffle(sorted(request.pool).filter((p) => !taken.has(p)));
  let labeled: string[];
  if (request.labeledPatients) {
    const known = new Set(request.pool);
    const unknown = request.labeledPatients.filter((p) => !known.has(p));
    if (unknown.length) {
      throw fail(
        `labeledPatients ${unknown.map((p) => `"${p}"`).join(", ")} not in the ` +
          `training pool (${request.pool.length} patients, e.g. ${
            sorted(request.pool).slice(0, 3).join(", ")
          })`,
      );
    }
    const held = request.labeledPatients.filter((p) => taken.has(p));
    if (held.length) {
      throw fail(`labeledPatients ${held.join(", ")} are validation or test patients`);
    }
    labeled = sorted(request.labeledPatients);
  } else {
    const count = split.labeled === "all" ? train.length : split.labeled;
    if (count > train.length) {
      throw fail(
        `split.labeled is ${split.labeled}, but the training pool has ${train.length} ` +
          `patients`,
      );
    }
    labeled = train.slice(0, count);
  }
  const isLabeled = new Set(labeled);
  const rest = train.filter((p) => !isLabeled.has(p));
  const unlabeledCount = split.unlabeled ?? rest.length;
  if (unlabeledCount > rest.length) {
    throw fail(
      `split.unlabeled is ${unlabeledCount}, but only ${rest.length} training patients ` +
        `are not labeled (${labeled.length} labeled of ${train.length})`,
    );
  }
  return {
    labeled: sorted(labeled),
    unlabeled: sorted(rest.slice(0, unlabeledCount)),
    validation: sorted(validation),
    test: sorted(test),
  };
}
