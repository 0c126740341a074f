/**
 * Result tables pasted in Markdown documents, kept equal to what `deno task table` prints from
 * the committed runs in `results/`. A table stands between two marker comments that name the
 * command which prints it:
 *
 * ```md
 * <!-- table: deno task table results/acdc-cpu --baseline ours-kl -->
 *
 * | method | seeds | ... |
 * ...
 *
 * <!-- /table -->
 * ```
 *
 * `deno task tables:update` rewrites every such block of `README.md` and `docs/**.md` (or of
 * the files given) from the runs, formatted as `deno fmt` formats Markdown;
 * `tests/results_tables_test.ts` fails when a block differs from what the command prints now
 * (ignoring only whitespace and the length of table rules, which `deno fmt` may change). Paths
 * in a marker are relative to the repository root.
 *
 * @module
 */
import { isAbsolute, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../core/errors.ts";
import { runScript } from "./run_script.ts";
import { runnableDeno } from "./child_deno.ts";
import { buildTable, formatTable, loadRuns, parsePowerPoints } from "./table.ts";
import { compareTables, formatComparison } from "./protocol_compare.ts";

/** The repository root (where `deno task` runs). */
export const REPO_ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** A marker is a line of its own (so that one quoted in running text is not one). */
const OPEN = /^<!--\s*table:\s*(.*?)\s*-->[ \t]*$/gm;
const CLOSE = /^<!-- \/table -->[ \t]*$/m;
const CLOSE_TEXT = "<!-- /table -->";

/** One marked table in a document. */
export interface TableBlock {
  /** The command in the opening marker, e.g. `deno task table results/acdc-cpu`. */
  command: string;
  /** Offsets of the text between the markers (`text.slice(start, end)` is the pasted table). */
  start: number;
  end: number;
  /** 1-based line of the opening marker. */
  line: number;
}

/**
 * The marked tables of a Markdown text.
 *
 * @throws {UserError} For an opening marker without its closing `<!-- /table -->`.
 */
export function findTableBlocks(text: string, file = "<text>"): TableBlock[] {
  const out: TableBlock[] = [];
  for (const m of text.matchAll(OPEN)) {
    const start = m.index! + m[0].length;
    const line = text.slice(0, m.index!).split("\n").length;
    const close = text.slice(start).search(CLOSE);
    const next = text.slice(start).search(OPEN);
    if (close < 0 || (next >= 0 && next < close)) {
      throw new UserError(`${file}:${line}: "${m[0]}" has no closing ${CLOSE_TEXT}`);
    }
    const end = start + close;
    out.push({ command: m[1], start, end, line });
  }
  return out;
}

/** Split a command line into words (single and double quotes group, no escapes). */
export function splitWords(command: string): string[] {
  const words: string[] = [];
  for (const m of command.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    words.push(m[1] ?? m[2] ?? m[3]);
  }
  return words;
}

/** What a marker's `deno task table ...` asks for. */
export interface TableCommand {
  paths: string[];
  baseline?: string;
  format: "md" | "csv" | "json";
  /** `--per-seed`: one row per run. */
  perSeed?: boolean;
  /** `--power D`. */
  power?: number;
  /** `--grid network|source`. */
  grid?: "network" | "source";
  /** `--versus <runs>` (repeatable): a comparison with these runs instead of a table. */
  versus?: string[];
}

/**
 * Parse `deno task table <runs...> [--baseline M] [--format md|csv|json] [--grid G] [--per-seed]
 * [--power D] [--versus <runs>]...` (the `table` command's arguments).
 *
 * @throws {UserError} For another command, an unknown flag or a missing value.
 */
export function parseTableCommand(command: string): TableCommand {
  const words = splitWords(command);
  const prefix = ["deno", "task", "table"];
  if (prefix.some((w, i) => words[i] !== w)) {
    throw new UserError(`"${command}" is not a "deno task table ..." command`);
  }
  const out: TableCommand = { paths: [], format: "md" };
  const rest = words.slice(prefix.length);
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i];
    if (!word.startsWith("--")) {
      out.paths.push(word);
      continue;
    }
    if (word === "--per-seed") {
      out.perSeed = true;
      continue;
    }
    const eq = word.indexOf("=");
    const flag = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? rest[++i] : word.slice(eq + 1);
    if (value === undefined || value === "") {
      throw new UserError(`"${command}": ${flag} needs a value`);
    }
    if (flag === "--baseline") out.baseline = value;
    else if (flag === "--versus") out.versus = [...out.versus ?? [], value];
    else if (flag === "--grid") {
      if (value !== "network" && value !== "source") {
        throw new UserError(`"${command}": --grid is network or source, not "${value}"`);
      }
      out.grid = value;
    } else if (flag === "--power") out.power = parsePowerPoints(value);
    else if (flag === "--format") {
      if (value !== "md" && value !== "csv" && value !== "json") {
        throw new UserError(`"${command}": --format is md, csv or json, not "${value}"`);
      }
      out.format = value;
    } else {throw new UserError(
        `"${command}": unknown option ${flag} (table takes --baseline, --format, --grid, --per-seed, --power, --versus)`,
      );}
  }
  if (out.paths.length === 0) throw new UserError(`"${command}": no run folder`);
  if (out.versus && (out.baseline !== undefined || out.perSeed || out.power !== undefined)) {
    throw new UserError(`"${command}": --versus takes none of --baseline, --per-seed, --power`);
  }
  return out;
}

/**
 * What `deno task table ...` prints to standard output (without its trailing newline), run from
 * `root`. Notes (unfinished runs, duplicates) go to `log`.
 */
export async function renderTableCommand(
  command: string,
  root: string = REPO_ROOT,
  log: (line: string) => void = () => {},
): Promise<string> {
  const c = parseTableCommand(command);
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const paths = c.paths.map(abs);
  if (c.versus) {
    const grid = c.grid ?? "network";
    const cmp = compareTables(
      buildTable(await loadRuns(paths, log), { log, grid }),
      buildTable(await loadRuns(c.versus.map(abs), log), { log, grid }),
      { this: c.paths.join(" "), versus: c.versus.join(" ") },
    );
    return formatComparison(cmp, c.format).trimEnd();
  }
  const runs = await loadRuns(paths, log);
  const table = buildTable(runs, { baseline: c.baseline, log, grid: c.grid });
  return formatTable(table, c.format, { perSeed: c.perSeed, power: c.power }).trimEnd();
}

/** Compare texts up to whitespace and the length of Markdown table rules (`---:`). */
export function normalizeTableText(text: string): string {
  return text.replace(/-{3,}/g, "---").replace(/\s+/g, " ").trim();
}

/** A block whose text differs from what its command prints. */
export interface StaleTable {
  file: string;
  line: number;
  command: string;
  /** What the command prints now. */
  expected: string;
  /** What the document holds. */
  actual: string;
}

/** The marked tables of `text` that differ from what their commands print now. */
export async function staleTables(
  text: string,
  file: string,
  root: string = REPO_ROOT,
): Promise<StaleTable[]> {
  const out: StaleTable[] = [];
  for (const b of findTableBlocks(text, file)) {
    const expected = await renderTableCommand(b.command, root);
    const actual = text.slice(b.start, b.end);
    if (normalizeTableText(expected) !== normalizeTableText(actual)) {
      out.push({ file, line: b.line, command: b.command, expected, actual: actual.trim() });
    }
  }
  return out;
}

/** Format Markdown as `deno fmt` does with this repository's settings (`deno fmt -`). */
export async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(await runnableDeno() ?? "deno", {
    args: ["fmt", "--ext=md", "-"],
    cwd: REPO_ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    throw new UserError(`deno fmt failed: ${new TextDecoder().decode(stderr).trim()}`);
  }
  return new TextDecoder().decode(stdout);
}

/**
 * `text` with every marked table replaced by what its command prints now (formatted by
 * `format`, default {@linkcode formatMarkdown}), and the number of blocks that changed.
 */
export async function updateTables(
  text: string,
  file: string,
  options: {
    root?: string;
    format?: (markdown: string) => Promise<string>;
    log?: (line: string) => void;
  } = {},
): Promise<{ text: string; changed: number }> {
  const root = options.root ?? REPO_ROOT;
  const format = options.format ?? formatMarkdown;
  let out = "";
  let at = 0;
  let changed = 0;
  for (const b of findTableBlocks(text, file)) {
    const rendered = await renderTableCommand(b.command, root, options.log);
    const body = `\n\n${(await format(rendered + "\n")).trim()}\n\n`;
    if (normalizeTableText(body) !== normalizeTableText(text.slice(b.start, b.end))) changed++;
    out += text.slice(at, b.start) + body;
    at = b.end;
  }
  return { text: out + text.slice(at), changed };
}

/** `README.md` and every `.md` file under `docs/`, as paths relative to `root`. */
export async function documentFiles(root: string = REPO_ROOT): Promise<string[]> {
  const files = ["README.md"];
  const walk = async (dir: string): Promise<void> => {
    let entries: Deno.DirEntry[] = [];
    try {
      entries = await Array.fromAsync(Deno.readDir(join(root, dir)));
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path);
      else if (e.isFile && e.name.endsWith(".md")) files.push(path);
    }
  };
  await walk("docs");
  return files;
}

/**
 * `deno task tables:update [--root DIR] [files...]`: rewrite the marked tables in place (files
 * and marker paths relative to `DIR`, default this repository).
 */
async function main(argv: string[]): Promise<void> {
  let root = REPO_ROOT;
  const args = [...argv];
  const at = args.indexOf("--root");
  if (at >= 0) {
    if (args[at + 1] === undefined) throw new UserError("--root needs a folder");
    root = args[at + 1];
    args.splice(at, 2);
  }
  const files = args.length ? args : await documentFiles(root);
  let blocks = 0;
  for (const file of files) {
    const path = isAbsolute(file) ? file : join(root, file);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound && args.length === 0) continue;
      throw new UserError(`Cannot read ${file}: ${(error as Error).message}`);
    }
    const n = findTableBlocks(text, file).length;
    if (n === 0) continue;
    blocks += n;
    const updated = await updateTables(text, file, { root, log: (l) => console.error(l) });
    const name = relative(root, path);
    if (updated.changed > 0) {
      await Deno.writeTextFile(path, updated.text);
      console.log(`${name}: ${updated.changed} of ${n} table(s) rewritten`);
    } else console.log(`${name}: ${n} table(s) up to date`);
  }
  if (blocks === 0) console.log("no <!-- table: ... --> markers in " + files.join(", "));
}

if (import.meta.main) await runScript(main);
