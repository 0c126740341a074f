/**
 * Reading recipe files: one UTF-8 YAML document holding a mapping of plain data, with every
 * YAML problem (syntax, unknown tags, complex keys, alias bombs) reported by line and column.
 *
 * @module
 */
import { YAML } from "../../deps.ts";
import { UserError } from "../errors.ts";
import { cloneData, describeValue, isPlainObject, Problem, recipeError } from "./_data.ts";
import { MAX_ALIAS_COUNT, MAX_FILE_BYTES } from "./schema.ts";

/** Read and parse one YAML recipe file into a plain mapping (`display` is used in messages). */
export async function readRecipeFile(
  abs: string,
  display: string,
  referrer?: { display: string },
): Promise<Record<string, unknown>> {
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(abs);
    if (info.isDirectory) throw recipeError(display, "is a directory, not a recipe file");
    if (info.size > MAX_FILE_BYTES) {
      throw recipeError(
        display,
        `file is too large (${info.size} bytes; a recipe is at most ${MAX_FILE_BYTES} bytes)`,
      );
    }
    bytes = await Deno.readFile(abs);
  } catch (error) {
    if (error instanceof UserError) throw error;
    if (error instanceof Deno.errors.NotFound) {
      if (referrer !== undefined) {
        throw recipeError(
          referrer.display,
          `extends: file not found: "${display}" (looked for ${abs})`,
        );
      }
      throw recipeError(display, `file not found (looked for ${abs})`);
    }
    throw recipeError(display, `cannot read the file: ${(error as Error).message}`);
  }
  if (bytes.length > MAX_FILE_BYTES) {
    throw recipeError(display, `file is too large (a recipe is at most ${MAX_FILE_BYTES} bytes)`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw recipeError(display, "not a text file (invalid UTF-8)");
  }
  if (text.includes("\0")) throw recipeError(display, "not a text file (it contains NUL bytes)");
  return parseYamlRecipe(text, display);
}

/**
 * Problems of a parsed YAML document that its `errors` do not list: warnings (an unknown tag
 * like `!foo`, an unsupported `%YAML` version), and keys that are not plain names (a complex key
 * `? [a]`, an alias, null), which would otherwise be turned into strings like `"[ a ]"`.
 */
export function yamlProblems(doc: YAML.Document, lines: YAML.LineCounter): string[] {
  const at = (node: { range?: [number, number, number] | null } | null | undefined) => {
    const offset = node?.range?.[0];
    if (offset === undefined) return "";
    const { line, col } = lines.linePos(offset);
    return `line ${line}, column ${col}: `;
  };
  const problems: string[] = doc.warnings.map((w) => {
    const tag = /^Unresolved tag: (\S+)/.exec(w.message);
    const standard = tag?.[1].replace(/^tag:yaml\.org,2002:/, "!!");
    const reason = tag === null
      ? firstLine(w.message)
      : standard !== tag[1]
      ? `the tag ${standard} does not fit its value (a recipe holds plain YAML: mappings, ` +
        `lists, strings, numbers, true/false and null; leave tags out)`
      : `unknown YAML tag ${tag[1]} (a recipe holds plain YAML: mappings, lists, strings, ` +
        `numbers, true/false and null)`;
    const pos = w.linePos?.[0];
    return pos ? `line ${pos.line}, column ${pos.col}: ${reason}` : `invalid YAML: ${reason}`;
  });
  YAML.visit(doc, {
    Pair(_, pair) {
      const key = pair.key as YAML.Node | null;
      if (YAML.isCollection(key)) {
        problems.push(
          `${at(key)}a key must be a plain name, got a ${YAML.isSeq(key) ? "list" : "mapping"} ` +
            `(complex keys like "? [a]" are not supported)`,
        );
      } else if (YAML.isAlias(key)) {
        problems.push(`${at(key)}a key must be a plain name, got the alias *${key.source}`);
      } else if (key === null || (YAML.isScalar(key) && key.value === null)) {
        problems.push(`${at(YAML.isNode(pair.value) ? pair.value : null)}a key is empty or null`);
      }
    },
  });
  return problems;
}

/** Parse recipe YAML text: exactly one document holding a mapping. */
function parseYamlRecipe(text: string, display: string): Record<string, unknown> {
  let docs: ReturnType<typeof YAML.parseAllDocuments>;
  const lines = new YAML.LineCounter();
  try {
    docs = YAML.parseAllDocuments(text, {
      merge: true,
      uniqueKeys: true,
      prettyErrors: true,
      lineCounter: lines,
    });
  } catch (error) {
    throw recipeError(display, `invalid YAML: ${firstLine((error as Error).message)}`);
  }
  if (!Array.isArray(docs)) throw recipeError(display, "the file is empty; expected a mapping");
  if (docs.length === 0) throw recipeError(display, "the file is empty; expected a mapping");
  if (docs.length > 1) {
    throw recipeError(
      display,
      `the file holds ${docs.length} YAML documents; a recipe is a single document`,
    );
  }
  const doc = docs[0];
  if (doc.errors.length > 0) {
    throw recipeError(display, doc.errors.slice(0, 3).map(describeYamlError));
  }
  const problems = yamlProblems(doc, lines);
  if (problems.length > 0) throw recipeError(display, problems);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    const message = (error as Error).message;
    if (/alias count/i.test(message)) {
      throw recipeError(
        display,
        `YAML aliases expand too much (more than ${MAX_ALIAS_COUNT}; an alias bomb?)`,
      );
    }
    throw recipeError(display, `invalid YAML: ${firstLine(message)}`);
  }
  if (value === null || value === undefined) {
    throw recipeError(display, "the file is empty; expected a mapping");
  }
  if (!isPlainObject(value)) {
    throw recipeError(display, `expected a mapping at the top level, got ${describeValue(value)}`);
  }
  try {
    return cloneData(value) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof Problem) throw recipeError(display, error.message);
    if (error instanceof RangeError) throw recipeError(display, "the YAML is nested too deeply");
    throw error;
  }
}

/** The first line of a YAML error message, without its ` at line 1, column 3:` suffix. */
export function firstLine(message: string): string {
  return message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
}

/** `line 3, column 5: <message>` for a YAML parse error. */
function describeYamlError(error: { message: string; linePos?: { line: number; col: number }[] }) {
  const first = firstLine(error.message);
  const pos = error.linePos?.[0];
  return pos ? `line ${pos.line}, column ${pos.col}: ${first}` : `invalid YAML: ${first}`;
}
