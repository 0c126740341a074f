/**
 * Assembly: the loaded cases of each patient split stacked into the slice sets and validation /
 * test volumes of a `SegmentationDataset` ({@linkcode assembleDataset}).
 *
 * @module
 */
import { UserError } from "../../core/errors.ts";
import type { SegmentationDataset, SliceSet, Volume } from "../../core/dataset.ts";
import type { PreparedCase } from "./preprocess.ts";
import type { PatientSplit } from "./_split.ts";

function sliceSet(cases: PreparedCase[], size: number, withLabels: boolean): SliceSet {
  const n = size * size;
  const count = cases.reduce((sum, c) => sum + c.shape[0], 0);
  const images = new Float32Array(count * n);
  const labels = withLabels ? new Uint8Array(count * n) : null;
  const patients: string[] = [];
  let k = 0;
  for (const c of cases) {
    images.set(c.image, k * n);
    if (labels) labels.set(c.label!, k * n);
    for (let s = 0; s < c.shape[0]; s++) patients.push(c.patient);
    k += c.shape[0];
  }
  return { count, height: size, width: size, images, labels, patients };
}

/** What {@linkcode assembleDataset} stacks. */
export interface AssembleInput {
  /** Dataset plugin id. */
  id: string;
  /** Class names, index 0 = background. */
  classNames: string[];
  /** Slice side. */
  size: number;
  /** Every loaded case. */
  cases: PreparedCase[];
  /** Patients of each split. */
  split: PatientSplit;
}

/**
 * Stack the cases of each split: labeled and unlabeled slices (ordered by patient, then volume
 * id) and one validation / test {@linkcode Volume} per case.
 *
 * @throws {UserError} When a labeled or validation case has no labels.
 */
export function assembleDataset(input: AssembleInput): SegmentationDataset {
  const byPatient = new Map<string, PreparedCase[]>();
  for (const c of input.cases) {
    const list = byPatient.get(c.patient) ?? [];
    list.push(c);
    byPatient.set(c.patient, list);
  }
  const casesOf = (patients: string[], needLabels: string | null) =>
    patients.flatMap((p) => {
      const list = (byPatient.get(p) ?? []).sort((a, b) => a.id.localeCompare(b.id));
      for (const c of list) {
        if (needLabels && !c.label) {
          throw new UserError(
            `Cannot load dataset "${input.id}": ${needLabels} volume "${c.id}" has no labels`,
          );
        }
      }
      return list;
    });
  const volumes = (patients: string[], split: string): Volume[] =>
    casesOf(patients, split).map((c) => ({
      id: c.id,
      patient: c.patient,
      shape: c.shape,
      ...(c.spacing ? { spacing: c.spacing } : {}),
      ...(c.affine ? { affine: c.affine } : {}),
      image: c.image,
      label: c.label!,
      ...(c.source ? { source: c.source } : {}),
    }));
  const { split } = input;
  const dataset: SegmentationDataset = {
    id: input.id,
    classNames: input.classNames,
    labeled: sliceSet(casesOf(split.labeled, "labeled"), input.size, true),
    unlabeled: sliceSet(casesOf(split.unlabeled, null), input.size, false),
    validation: volumes(split.validation, "validation"),
    splits: {
      labeled: split.labeled,
      unlabeled: split.unlabeled,
      validation: split.validation,
      ...(split.test.length ? { test: split.test } : {}),
    },
  };
  if (split.test.length) dataset.test = volumes(split.test, "test");
  return dataset;
}
