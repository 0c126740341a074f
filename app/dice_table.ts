/**
 * The per-class table that `run` and `eval` print at the end: Dice (%) per class and, where
 * evaluated, HD95.
 *
 * @module
 */
import type { Summary } from "../core/trainer.ts";

/** The per-class table: Dice (%) and, where evaluated, HD95 (`n/a` where undefined). */
export function printTable(
  summary: Pick<Summary, "dice" | "dice_mean"> & Partial<Summary>,
  title: string,
): void {
  const rows = Object.entries(summary.dice);
  const width = Math.max(10, ...rows.map(([k]) => k.length));
  const hd = summary.hd95;
  const cell = (v: number | null | undefined) =>
    typeof v === "number" && Number.isFinite(v) ? v.toFixed(2) : "n/a";
  const line = (name: string, dice: number, h?: number) =>
    console.log(
      `${name.padEnd(width)}  ${(100 * dice).toFixed(2).padStart(8)}` +
        (hd ? `  ${cell(h).padStart(9)}` : ""),
    );
  console.log(`\n${title}`);
  console.log(
    `${"class".padEnd(width)}  ${"Dice (%)".padStart(8)}` +
      (hd ? `  ${`HD95 ${summary.hd95_unit === "voxels" ? "(vx)" : "(mm)"}`.padStart(9)}` : ""),
  );
  for (const [k, v] of rows) line(k, v, hd?.[k]);
  line("mean", summary.dice_mean, summary.hd95_mean);
  const undef = Object.entries(summary.hd95_undefined ?? {}).filter(([, n]) => n > 0);
  if (undef.length) {
    console.log(
      `HD95 undefined (class in only one of prediction and truth), left out of the mean: ` +
        undef.map(([k, n]) => `${k} ${n}`).join(", ") + " volume(s)",
    );
  }
}
