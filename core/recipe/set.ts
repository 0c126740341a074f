/**
 * Command-line overrides: `--set path=value` (`trainer.iterations=200`,
 * `regularizers[0].weight=2`), the value parsed as YAML.
 *
 * @module
 */
import { YAML } from "../../deps.ts";
import {
  cloneData,
  describeValue,
  formatPath,
  hasKey,
  isPlainObject,
  type PathSegment,
  Problem,
  setKey,
} from "./_data.ts";
import { MAX_ALIAS_COUNT } from "./schema.ts";
import { firstLine, yamlProblems } from "./yaml.ts";

type SetSegment = { key: string; bracket: false } | { index: number; bracket: true };

/** Parse `a.b[1].c` / `a.b.1.c` into segments; throws a reason string. */
function parseSetPath(path: string): SetSegment[] {
  const segments: SetSegment[] = [];
  let i = 0;
  while (i < path.length) {
    if (path[i] === "[") {
      const end = path.indexOf("]", i);
      const digits = end < 0 ? "" : path.slice(i + 1, end);
      if (!/^\d+$/.test(digits)) {
        throw new Problem(`expected a list index like [0] at character ${i + 1} of the path`);
      }
      segments.push({ index: Number(digits), bracket: true });
      i = end + 1;
    } else {
      let end = i;
      while (end < path.length && path[end] !== "." && path[end] !== "[") end++;
      const key = path.slice(i, end).trim();
      if (key === "") throw new Problem(`empty key at character ${i + 1} of the path`);
      if (key === "__proto__") throw new Problem(`the key "__proto__" is not allowed in a recipe`);
      segments.push({ key, bracket: false });
      i = end;
    }
    if (i < path.length) {
      if (path[i] === ".") {
        i++;
        if (i >= path.length || path[i] === "." || path[i] === "[") {
          throw new Problem(`empty key at character ${i + 1} of the path`);
        }
      } else if (path[i] !== "[") {
        throw new Problem(`unexpected "${path[i]}" at character ${i + 1} of the path`);
      }
    }
  }
  if (segments.length === 0) throw new Problem("empty path");
  return segments;
}

/** Apply one `--set path=value` to `root` (in place); throws a reason string. */
export function applySet(root: Record<string, unknown>, spec: string): void {
  const eq = spec.indexOf("=");
  if (eq < 0) throw new Problem(`missing "=" (expected path=value, e.g. trainer.iterations=200)`);
  const segments = parseSetPath(spec.slice(0, eq).trim());
  const first = segments[0];
  if (!first.bracket && first.key === "extends") {
    throw new Problem("extends cannot be set with --set; write it in the recipe file");
  }
  let value: unknown;
  try {
    const lines = new YAML.LineCounter();
    const doc = YAML.parseDocument(spec.slice(eq + 1), { uniqueKeys: true, lineCounter: lines });
    const problems = [...doc.errors.map((e) => firstLine(e.message)), ...yamlProblems(doc, lines)];
    if (problems.length > 0) throw new Problem(`invalid YAML value: ${problems.join("; ")}`);
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    if (error instanceof Problem) throw error;
    throw new Problem(`invalid YAML value: ${firstLine((error as Error).message)}`);
  }
  value = cloneData(value === undefined ? null : value);

  let container: unknown = root;
  const walked: PathSegment[] = [];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    const last = i === segments.length - 1;
    const next = segments[i + 1];
    const fresh = () => (next !== undefined && next.bracket ? [] : {});
    const here = formatPath(walked);
    if (Array.isArray(container)) {
      const index = segment.bracket
        ? segment.index
        : /^\d+$/.test(segment.key)
        ? Number(segment.key)
        : undefined;
      if (index === undefined) {
        throw new Problem(`${here} is a list; use ${here}[i] to pick an item`);
      }
      if (index > container.length) {
        throw new Problem(
          `${here} has ${container.length} item${container.length === 1 ? "" : "s"}, ` +
            `so index ${index} is out of range (use ${container.length} to append)`,
        );
      }
      if (last) {
        container[index] = value;
        return;
      }
      const child = container[index];
      if (child === undefined || child === null) container[index] = fresh();
      else if (typeof child !== "object") {
        throw new Problem(
          `${formatPath([...walked, index])} is ${describeValue(child)}, not a mapping or list`,
        );
      }
      container = container[index];
      walked.push(index);
    } else if (isPlainObject(container)) {
      if (segment.bracket) {
        throw new Problem(`${here === "" ? "the recipe" : here} is a mapping, not a list`);
      }
      const key = segment.key;
      if (last) {
        setKey(container, key, value);
        return;
      }
      const child = hasKey(container, key) ? container[key] : undefined;
      if (child === undefined || child === null) setKey(container, key, fresh());
      else if (typeof child !== "object") {
        throw new Problem(
          `${formatPath([...walked, key])} is ${describeValue(child)}, not a mapping or list`,
        );
      }
      container = container[key];
      walked.push(key);
    }
  }
}
