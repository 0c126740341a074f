/**
 * Result tables over runs (paper Table 1): one row per method, per dataset a column per class
 * and the mean, each cell the mean (sample std) in percent over seeds, and a one-sided paired
 * t-test of a baseline method against every other one, pairing the mean foreground Dice of each
 * validation volume by (volume id, seed).
 *
 * This module gathers the parts, each in its own file: finding the runs (`find_runs.ts`, with
 * `glob.ts`), building the table and its tests (`result_table.ts`), and writing it as Markdown,
 * CSV or JSON (`table_format.ts`).
 *
 * @module
 */
export {
  buildTable,
  onSourceGrid,
  PAPER_METHOD_ORDER,
  type ResultTable,
  type TableCell,
  type TableEntry,
  type TableGrid,
  type TableOptions,
  type TableTest,
} from "./result_table.ts";
export {
  findRunDirs,
  loadRuns,
  readRunSummary,
  type RunResult,
  type RunSummary,
} from "./find_runs.ts";
export { expandGlob } from "./glob.ts";
export {
  formatCell,
  formatMinutes,
  formatP,
  formatTable,
  parsePowerPoints,
  perSeedCells,
  tableCells,
  type TableFormatOptions,
} from "./table_format.ts";
