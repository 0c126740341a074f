/**
 * Shell-style globs (`*`, `?`, `[abc]` within one path segment) expanded to the existing paths,
 * for the run folders `table` and `plot` are given (std's `expandGlob` lives on JSR).
 *
 * @module
 */
import { exists } from "./_fs.ts";

const GLOB_CHARS = /[*?[]/;

function globSegmentRegExp(segment: string): RegExp {
  let re = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = segment.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        let body = segment.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (body.startsWith("!")) body = "^" + body.slice(1);
        re += `[${body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * Expand a shell-style glob (`*`, `?`, `[abc]` within one path segment) to the existing paths,
 * sorted; a pattern without glob characters is returned as is.
 */
export async function expandGlob(pattern: string): Promise<string[]> {
  if (!GLOB_CHARS.test(pattern)) return [pattern];
  const absolute = pattern.startsWith("/");
  const segments = pattern.split("/").filter((s, i) => s !== "" || i === 0);
  let current = [absolute ? "/" : ""];
  for (const segment of segments) {
    if (segment === "") continue;
    const next: string[] = [];
    for (const base of current) {
      const join = (name: string) =>
        base === "" ? name : base.endsWith("/") ? base + name : `${base}/${name}`;
      if (!GLOB_CHARS.test(segment)) {
        next.push(join(segment));
        continue;
      }
      const re = globSegmentRegExp(segment);
      try {
        for await (const e of Deno.readDir(base === "" ? "." : base)) {
          if (e.name.startsWith(".") && !segment.startsWith(".")) continue;
          if (re.test(e.name)) next.push(join(e.name));
        }
      } catch {
        // not a directory
      }
    }
    current = next;
  }
  const found: string[] = [];
  for (const p of current) if (await exists(p)) found.push(p);
  return found.sort();
}
