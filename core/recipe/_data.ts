/**
 * Plain recipe data: paths inside it (`a.b[1].c`), values described for messages, safe copies,
 * and the one error every recipe problem becomes. Private to `core/recipe/`.
 *
 * @module
 */
import { UserError } from "../errors.ts";

/** At most this many issues are listed in one message. */
const MAX_ISSUES = 10;

export type PathSegment = string | number;

/** `a.b[1].c` */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** The error thrown for every problem: `Cannot load recipe "<file>": <reasons>`. */
export function recipeError(file: string, reasons: string | string[]): UserError {
  const list = Array.isArray(reasons) ? reasons : [reasons];
  const shown = list.slice(0, MAX_ISSUES);
  if (list.length > shown.length) shown.push(`and ${list.length - shown.length} more problems`);
  return new UserError(`Cannot load recipe "${file}": ${shown.join("; ")}`);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Short description of a value for messages: `"abc"`, `12`, `a mapping`, ... */
export function describeValue(value: unknown): string {
  if (typeof value === "string") {
    const s = value.length > 60 ? value.slice(0, 57) + "..." : value;
    return JSON.stringify(s);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/** Set `object[key] = value`, also for a key named `__proto__`. */
export function setKey(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

export function hasKey(object: Record<string, unknown>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key);
}

/**
 * What a value that is not plain data is, in words (YAML's `!!binary`, `!!timestamp`, `!!set`,
 * `!!omap` / `!!pairs` give byte arrays, dates, sets and maps), or null for plain data.
 */
function foreignValue(value: object): string | null {
  if (Array.isArray(value)) return null;
  if (ArrayBuffer.isView(value)) return "a !!binary value";
  if (value instanceof Date) return "a !!timestamp value";
  if (value instanceof Set) return "a !!set value";
  if (value instanceof Map) return "an !!omap or !!pairs value";
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null ? null : "a tagged value";
}

/**
 * A deep copy of plain YAML data (aliases become independent copies). Throws a
 * {@linkcode Problem} naming the place of a value that is not plain data (`!!binary`,
 * `!!timestamp`, `!!set`, ...), a mapping or list that contains itself (a recursive alias), or a
 * key `__proto__` (which would silently vanish in a plain object).
 */
export function cloneData(
  value: unknown,
  path: PathSegment[] = [],
  open = new Set<object>(),
): unknown {
  if (value === null || typeof value !== "object") return value;
  const at = () => (path.length > 0 ? `${formatPath(path)}: ` : "");
  const foreign = foreignValue(value);
  if (foreign !== null) {
    throw new Problem(
      `${at()}${foreign} is not supported in a recipe; write a plain string, number, list or ` +
        `mapping`,
    );
  }
  if (open.has(value)) {
    throw new Problem(
      `${at()}a YAML alias refers to a mapping or list that contains it (a cycle, which a ` +
        `recipe cannot hold)`,
    );
  }
  open.add(value);
  try {
    if (Array.isArray(value)) {
      return value.map((item, i) => {
        path.push(i);
        try {
          return cloneData(item, path, open);
        } finally {
          path.pop();
        }
      });
    }
    const record = value as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(record)) {
      path.push(key);
      try {
        if (key === "__proto__") {
          throw new Problem(`${at()}the key "__proto__" is not allowed in a recipe`);
        }
        setKey(out, key, cloneData(record[key], path, open));
      } finally {
        path.pop();
      }
    }
    return out;
  } finally {
    open.delete(value);
  }
}

/** Where non-finite numbers (`.inf`, `.nan`, `1e999`) sit in `value`, as messages. */
export function nonFiniteNumbers(
  value: unknown,
  path: PathSegment[] = [],
  out: string[] = [],
): string[] {
  if (typeof value === "number" && !Number.isFinite(value)) {
    out.push(`${formatPath(path) || "(top level)"}: expected a finite number, got ${value}`);
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => nonFiniteNumbers(item, [...path, i], out));
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) nonFiniteNumbers(value[key], [...path, key], out);
  }
  return out;
}

/**
 * A reason, without location, thrown by the helpers of `core/recipe/` and wrapped by
 * `loadRecipe`.
 */
export class Problem extends Error {}
