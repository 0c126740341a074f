/**
 * `predict`: segment scans with a run directory's checkpoint (`app/predict.ts`), one line per
 * scan (or JSON); exit code 1 when some scans failed.
 *
 * @module
 */
import type { Command } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { volumeFormat } from "../io/volume.ts";
import { addCommand, PREDICT_COMMAND } from "./commands.ts";
import { refuseGrant } from "./grants.ts";
import { PartialFailure } from "./partial_failure.ts";
import { loadPredictor, predictScans } from "./predict.ts";

/**
 * A scan's shape in the order its file lists the axes: NIfTI and MetaImage list them fastest
 * first (x, y, z: the reverse of a `VolumeData` shape, which is slowest first); HDF5 and PNG
 * slices as stored.
 */
export function fileAxisOrder(shape: number[], path: string): number[] {
  const format = volumeFormat(path);
  return format === "nifti" || format === "metaimage" ? [...shape].reverse() : shape;
}

/** Add `predict` to `program`. */
export function addPredictCommand(program: Command): void {
  addCommand(program, PREDICT_COMMAND)
    .action(async (runDir: string, inputs: string[], opts: {
      out: string;
      format: string;
      checkpoint: string;
      backend?: string;
      json?: boolean;
      grant: string[];
    }) => {
      refuseGrant(opts.grant);
      if (opts.format !== "same" && opts.format !== "nifti") {
        throw new UserError(`Unknown format "${opts.format}"; use same or nifti`);
      }
      if (opts.checkpoint !== "best" && opts.checkpoint !== "latest") {
        throw new UserError(`Unknown checkpoint "${opts.checkpoint}"; use best or latest`);
      }
      const predictor = await loadPredictor(runDir, {
        checkpoint: opts.checkpoint,
        backend: opts.backend,
      });
      try {
        const p = predictor.prep;
        console.error(
          `predict with ${predictor.checkpoint} (backend ${predictor.backend}): classes ` +
            `${predictor.classNames.join(", ")}; preprocessing: ${p.size} x ${p.size} ` +
            `slices (fit ${p.fit}, normalize ${p.normalize}, slice axis ${p.sliceAxis}` +
            (p.window ? `, window [${p.window.join(", ")}]` : "") + ")",
        );
        const { written, failed } = await predictScans(predictor, inputs, {
          out: opts.out,
          format: opts.format,
          onResult: opts.json ? undefined : (r) => {
            if ("message" in r) console.log(`FAIL  ${r.input}: ${r.message}`);
            else {
              const counts = Object.entries(r.voxels).slice(1).map(([k, v]) => `${k} ${v}`);
              console.log(
                `ok    ${r.input} -> ${r.output} (${
                  fileAxisOrder(r.shape, r.input).join(" x ")
                }; ` +
                  `voxels ` +
                  `${counts.join(", ")}; ${r.seconds.toFixed(1)} s)`,
              );
            }
          },
        });
        if (opts.json) console.log(JSON.stringify({ written, failed }, null, 2));
        const line = `${written.length + failed.length} scan(s): ${written.length} ` +
          `prediction(s) written to ${opts.out}, ${failed.length} failed`;
        if (failed.length) throw new PartialFailure(line);
        console.error(line);
      } finally {
        predictor.dispose();
      }
    });
}
