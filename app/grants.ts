/**
 * What a launched command is granted, by kind (`--grant kind=value[,value]`), and how that
 * becomes Deno's permission flags: the vocabulary of the launcher's plan (`app/launch_plan.ts`).
 *
 * @module
 */
import { UserError } from "../core/errors.ts";

/** The kinds of `--grant`. */
export const GRANT_KINDS = ["read", "write", "env", "net", "import", "sys", "run", "ffi"] as const;
export type GrantKind = typeof GRANT_KINDS[number];

/** What a run is granted, by kind: a list of values, or `true` for everything of that kind. */
export type Grants = Partial<Record<GrantKind, string[] | true>>;

/** `--grant kind=a,b` values, merged by kind; `--grant net` (no value) grants the whole kind. */
export function parseGrants(specs: string[]): Grants {
  const grants: Grants = {};
  for (const spec of specs) {
    const eq = spec.indexOf("=");
    const kind = (eq < 0 ? spec : spec.slice(0, eq)).trim() as GrantKind;
    if (!GRANT_KINDS.includes(kind)) {
      throw new UserError(
        `--grant "${spec}": unknown kind "${kind}"; kinds: ${GRANT_KINDS.join(", ")} ` +
          `(e.g. --grant read=/data/acdc)`,
      );
    }
    if (eq < 0) {
      grants[kind] = true;
      continue;
    }
    const values = spec.slice(eq + 1).split(",").map((v) => v.trim()).filter((v) => v !== "");
    if (values.length === 0) throw new UserError(`--grant "${spec}": no value after "="`);
    const had = grants[kind];
    if (had !== true) grants[kind] = [...(had ?? []), ...values];
  }
  return grants;
}

/** Add `values` to `grants[kind]` (no-op when the kind is granted wholly). */
export function addGrant(grants: Grants, kind: GrantKind, ...values: string[]): void {
  const had = grants[kind];
  if (had === true) return;
  const list = had ?? [];
  for (const v of values) if (!list.includes(v)) list.push(v);
  grants[kind] = list;
}

/** Whether the values of `kind` are paths (resolved against the working directory). */
export function pathLike(kind: GrantKind): boolean {
  return kind === "read" || kind === "write" || kind === "ffi";
}

/**
 * Deno permission flags for `grants` (`--no-prompt` first: a missing permission is an error,
 * never a question).
 *
 * @throws {UserError} For a value with a comma, which Deno's flag syntax cannot carry.
 */
export function grantFlags(grants: Grants): string[] {
  const flags = ["--no-prompt"];
  // Without an --allow-import list Deno 2 still imports from a default list of hosts
  // (deno.land, jsr.io, esm.sh, ...): no remote plugin means no remote module at all.
  const imports = grants.import;
  if (imports === undefined || (imports !== true && imports.length === 0)) {
    flags.push("--no-remote");
  }
  for (const kind of GRANT_KINDS) {
    const value = grants[kind];
    if (value === undefined) continue;
    if (value === true) {
      flags.push(`--allow-${kind}`);
      continue;
    }
    if (value.length === 0) continue;
    for (const v of value) {
      if (v.includes(",")) {
        throw new UserError(
          `Cannot grant ${kind} "${v}": Deno's permission flags cannot carry a comma; rename it ` +
            `or run deno run <your flags> app/cli.ts run ... directly`,
        );
      }
    }
    flags.push(`--allow-${kind}=${value.join(",")}`);
  }
  return flags;
}

/**
 * One line per kind, for the log: what the run is granted. The read grants in `graphFiles`
 * (the modules a plugin imports) are counted rather than listed; `webgpu` adds that the run
 * gets WebGPU (`--unstable-webgpu`).
 */
export function describeGrants(
  grants: Grants,
  command = "run",
  graphFiles: string[] = [],
  webgpu = false,
): string {
  const parts: string[] = [];
  const summed = new Set(graphFiles);
  for (const kind of GRANT_KINDS) {
    const value = grants[kind];
    if (value === true) parts.push(`${kind}: all`);
    else if (value?.length) {
      const shown = kind === "read" ? value.filter((v) => !summed.has(v)) : value;
      const hidden = value.length - shown.length;
      parts.push(
        `${kind}: ${shown.join(", ")}` +
          (hidden ? `, and the ${hidden} local modules the plugins import` : ""),
      );
    }
  }
  const none = GRANT_KINDS.filter((k) =>
    grants[k] === undefined || (grants[k] as string[]).length === 0
  );
  if (webgpu) parts.push("webgpu: yes (--unstable-webgpu, for backend webgpu / auto)");
  return `permissions of this ${command} (deno task ${command}): ${parts.join("; ")}` +
    (none.length ? `; none of ${none.join(", ")}` : "");
}

/** Drop `--grant X` / `--grant=X` from `args` (the child's CLI does not know it). */
export function withoutGrants(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (args[i] === "--grant") {
      i++;
      continue;
    }
    if (args[i].startsWith("--grant=")) continue;
    out.push(args[i]);
  }
  return out;
}

/** `--grant` reaching the CLI itself: it was started without the launcher, so nothing grants. */
export function refuseGrant(grants: string[]): void {
  if (grants.length === 0) return;
  throw new UserError(
    "--grant is read by deno task run / eval / predict (the launcher); started with deno run, " +
      "give Deno's own --allow-<kind> flags instead",
  );
}
