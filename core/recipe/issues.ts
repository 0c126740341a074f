/**
 * Zod issues turned into recipe messages: the path inside the recipe, what was expected in
 * words, what was given, and a "did you mean" suggestion for a misspelt key or value.
 *
 * @module
 */
import { z } from "../../deps.ts";
import type { ZodIssue, ZodTypeAny } from "../../deps.ts";
import { describeValue, formatPath, hasKey, isPlainObject, type PathSegment } from "./_data.ts";

/** The value at `path` inside `root`, or `undefined`. */
function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let current = root;
  for (const segment of path) {
    if (Array.isArray(current) && typeof segment === "number") current = current[segment];
    else if (isPlainObject(current) && hasKey(current, String(segment))) {
      current = current[String(segment)];
    } else return undefined;
  }
  return current;
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The closest of `candidates` to `word` within edit distance 2 (case-insensitive first). */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = candidate.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Remove wrappers (default, optional, effects, ...) around a schema. */
function unwrapSchema(schema: ZodTypeAny | undefined): ZodTypeAny | undefined {
  let current = schema;
  for (let i = 0; i < 32 && current !== undefined; i++) {
    if (current instanceof z.ZodDefault) current = current.removeDefault();
    else if (current instanceof z.ZodOptional || current instanceof z.ZodNullable) {
      current = current.unwrap();
    } else if (current instanceof z.ZodEffects) current = current.innerType();
    else if (current instanceof z.ZodCatch) current = current.removeCatch();
    else if (current instanceof z.ZodBranded || current instanceof z.ZodReadonly) {
      current = current.unwrap();
    } else if (current instanceof z.ZodPipeline) current = current._def.in;
    else if (current instanceof z.ZodLazy) current = current.schema;
    else return current;
  }
  return current;
}

/** The (unwrapped) schema of the value at `path`, when it can be found. */
function schemaAt(schema: ZodTypeAny, path: readonly PathSegment[]): ZodTypeAny | undefined {
  let current = unwrapSchema(schema);
  for (const segment of path) {
    if (current instanceof z.ZodObject) {
      current = unwrapSchema((current.shape as Record<string, ZodTypeAny>)[String(segment)]);
    } else if (current instanceof z.ZodArray) current = unwrapSchema(current.element);
    else if (current instanceof z.ZodRecord) current = unwrapSchema(current.valueSchema);
    else return undefined;
  }
  return current;
}

/** What a schema expects, in words (`a mapping`, `one of "a", "b"`), when known. */
function expectation(schema: ZodTypeAny | undefined, zodExpected?: string): string {
  if (schema instanceof z.ZodEnum) {
    return `one of ${(schema.options as string[]).map((o) => JSON.stringify(o)).join(", ")}`;
  }
  if (schema instanceof z.ZodLiteral) return JSON.stringify(schema.value);
  if (schema instanceof z.ZodObject || schema instanceof z.ZodRecord) return "a mapping";
  if (schema instanceof z.ZodArray || schema instanceof z.ZodTuple) return "a list";
  if (schema instanceof z.ZodString) return "a string";
  if (schema instanceof z.ZodBoolean) return "true or false";
  if (schema instanceof z.ZodNumber) return "a number";
  switch (zodExpected) {
    case "object":
      return "a mapping";
    case "array":
      return "a list";
    case "string":
      return "a string";
    case "boolean":
      return "true or false";
    case "number":
      return "a number";
    case "integer":
      return "an integer";
    default:
      return zodExpected ?? "another value";
  }
}

/** Whether zod wrote `issue.message` itself (rather than a schema author). */
function isDefaultMessage(issue: ZodIssue, data: unknown): boolean {
  try {
    const { message } = z.defaultErrorMap(issue, { data, defaultError: "" });
    return message === issue.message || issue.message === "Required";
  } catch {
    return false;
  }
}

/** Describe one zod issue; `prefix` locates the validated value inside the recipe. */
function describeIssue(
  issue: ZodIssue,
  input: unknown,
  schema: ZodTypeAny,
  prefix: readonly PathSegment[],
  extraKeys: readonly string[],
): string[] {
  const fullPath = [...prefix, ...issue.path];
  const where = formatPath(fullPath);
  const value = valueAt(input, issue.path);
  const parent = valueAt(input, issue.path.slice(0, -1));
  const present = issue.path.length === 0 ||
    (isPlainObject(parent) && hasKey(parent, String(issue.path[issue.path.length - 1]))) ||
    (Array.isArray(parent) && value !== undefined);
  const custom = !isDefaultMessage(issue, value);

  if (issue.code === "unrecognized_keys") {
    const node = schemaAt(schema, issue.path);
    const known = [
      ...(node instanceof z.ZodObject ? Object.keys(node.shape) : []),
      ...(issue.path.length === 0 ? extraKeys : []),
    ];
    const place = where === "" ? "at the top level" : `in ${where}`;
    return issue.keys.map((key) => {
      const guess = closest(key, known);
      const hint = guess !== undefined
        ? ` (did you mean "${guess}"?)`
        : known.length > 0
        ? ` (known keys: ${known.join(", ")})`
        : "";
      return `unknown key "${key}" ${place}${hint}`;
    });
  }

  const missing = !present && value === undefined &&
    (issue.code === "invalid_type" || (custom && issue.message.startsWith("expected ")));
  if (missing) return [`missing required field ${where === "" ? "(top level)" : where}`];

  const at = where === "" ? "" : `${where}: `;
  let reason: string;
  if (custom) {
    reason = issue.message;
  } else {
    switch (issue.code) {
      case "invalid_type":
        reason = `expected ${expectation(schemaAt(schema, issue.path), issue.expected)}`;
        break;
      case "invalid_enum_value": {
        reason = `expected one of ${issue.options.map((o) => JSON.stringify(o)).join(", ")}`;
        const guess = typeof value === "string"
          ? closest(value, issue.options.map(String))
          : undefined;
        if (guess !== undefined) {
          return [`${at}${reason}, got ${describeValue(value)} (did you mean "${guess}"?)`];
        }
        break;
      }
      case "invalid_literal":
        reason = `expected ${JSON.stringify(issue.expected)}`;
        break;
      case "too_small":
      case "too_big": {
        const op = issue.code === "too_small"
          ? (issue.inclusive ? ">=" : ">")
          : (issue.inclusive ? "<=" : "<");
        const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
        if (issue.type === "number" || issue.type === "bigint") {
          reason = `expected a number ${op} ${bound}`;
        } else if (issue.type === "string") {
          reason = `expected a string of ${op} ${bound} characters`;
        } else if (issue.type === "array" || issue.type === "set") {
          reason = `expected a list of ${op} ${bound} items`;
        } else reason = issue.message;
        break;
      }
      case "not_finite":
        reason = "expected a finite number";
        break;
      case "not_multiple_of":
        reason = `expected a multiple of ${issue.multipleOf}`;
        break;
      default:
        reason = issue.message;
    }
  }
  if (reason.startsWith("expected ") && !reason.includes(", got ")) {
    reason += `, got ${value === undefined ? "nothing" : describeValue(value)}`;
  }
  return [`${at}${reason}`];
}

/** Describe every issue of a failed parse, duplicates removed. */
export function describeIssues(
  issues: readonly ZodIssue[],
  input: unknown,
  schema: ZodTypeAny,
  prefix: readonly PathSegment[] = [],
  extraKeys: readonly string[] = [],
): string[] {
  const out: string[] = [];
  // Unknown keys first: a misspelt key often explains a "missing required field" next to it.
  const sorted = [
    ...issues.filter((issue) => issue.code === "unrecognized_keys"),
    ...issues.filter((issue) => issue.code !== "unrecognized_keys"),
  ];
  for (const issue of sorted) {
    for (const line of describeIssue(issue, input, schema, prefix, extraKeys)) {
      if (!out.includes(line)) out.push(line);
    }
  }
  return out;
}
