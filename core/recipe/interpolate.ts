/**
 * Interpolation: `${VAR}` / `${VAR:-default}` in string values (`$${` is a literal `${`), and
 * the escaping that makes a written recipe load back to the same strings.
 *
 * @module
 */
import { YAML } from "../../deps.ts";
import { formatPath, isPlainObject, type PathSegment, Problem, setKey } from "./_data.ts";

/** Expand `${VAR}` / `${VAR:-default}` in one string; `$${` is a literal `${`. */
function interpolateString(
  text: string,
  path: readonly PathSegment[],
  env: (name: string) => string | undefined,
): unknown {
  let out = "";
  let references = 0;
  let literal = false;
  let i = 0;
  while (i < text.length) {
    if (text.startsWith("$${", i)) {
      out += "${";
      literal = true;
      i += 3;
    } else if (text.startsWith("${", i)) {
      const end = text.indexOf("}", i + 2);
      if (end < 0) {
        throw new Problem(
          `${formatPath(path)}: unterminated "\${" (write "$\${" for a literal "\${")`,
        );
      }
      const body = text.slice(i + 2, end);
      const match = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/.exec(body);
      if (match === null) {
        throw new Problem(
          `${formatPath(path)}: invalid variable reference "\${${body}}" ` +
            `(expected \${NAME} or \${NAME:-default}; write "$\${" for a literal "\${")`,
        );
      }
      const [, name, fallback] = match;
      let got: string | undefined;
      try {
        got = env(name);
      } catch (error) {
        throw new Problem(
          `${formatPath(path)}: cannot read environment variable "${name}": ${
            (error as Error).message
          }`,
        );
      }
      if ((got === undefined || got === "") && fallback !== undefined) got = fallback;
      if (got === undefined) {
        throw new Problem(
          `${formatPath(path)}: environment variable "${name}" is not set ` +
            `(write \${${name}:-value} to give a default)`,
        );
      }
      out += got;
      references++;
      i = end + 1;
    } else {
      out += text[i];
      literal = true;
      i++;
    }
  }
  // A value that is exactly one reference takes the YAML type of its text (numbers, booleans).
  if (references === 1 && !literal && out.trim() === out && out !== "") {
    try {
      const typed = YAML.parse(out);
      if (typeof typed === "number" || typeof typed === "boolean") return typed;
    } catch {
      // stays a string
    }
  }
  return out;
}

/** Interpolate every string value (not keys) of `value`. */
export function interpolate(
  value: unknown,
  path: PathSegment[],
  env: (name: string) => string | undefined,
): unknown {
  if (typeof value === "string") return interpolateString(value, path, env);
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, [...path, i], env));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      setKey(out, key, interpolate(value[key], [...path, key], env));
    }
    return out;
  }
  return value;
}

/** Write every `${` of string values as `$${`, so interpolating again gives the same strings. */
export function escapeInterpolation(value: unknown): unknown {
  if (typeof value === "string") return value.replaceAll("${", () => "$${");
  if (Array.isArray(value)) return value.map(escapeInterpolation);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) setKey(out, key, escapeInterpolation(value[key]));
    return out;
  }
  return value;
}
