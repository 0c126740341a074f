/**
 * A child `deno run ... app/cli.ts` of this process (a `--jobs` run of a sweep, the launcher's
 * command, the doc tables' `table`): the Deno it may run, the permission flags it gets, and the
 * path of app/cli.ts.
 *
 * @module
 */

/**
 * The permission flags of a child `deno run`: the ones this process holds globally, and for
 * partial read / write grants, those of `paths` it holds.
 */
export async function permissionFlags(
  paths: { read: string[]; write: string[] },
): Promise<string[]> {
  const flags: string[] = [];
  const names = ["read", "write", "env", "sys", "net", "ffi", "run", "import"] as const;
  for (const name of names) {
    let state: string;
    try {
      state = (await Deno.permissions.query({ name } as Deno.PermissionDescriptor)).state;
    } catch {
      continue; // not a permission of this Deno
    }
    if (state === "granted") {
      flags.push(`--allow-${name}`);
      continue;
    }
    if (name !== "read" && name !== "write") continue;
    const granted: string[] = [];
    for (const path of paths[name]) {
      const s = await Deno.permissions.query({ name, path });
      if (s.state === "granted") granted.push(path);
    }
    if (granted.length) flags.push(`--allow-${name}=${granted.join(",")}`);
  }
  return flags;
}

/**
 * The permission flags `deno task run` (app/launcher.ts) gave this process, passed on in
 * `MISSL_PERMISSION_FLAGS` so that each `--jobs` child gets the same, or `null`.
 */
export function inheritedFlags(): string[] | null {
  let text: string | undefined;
  try {
    text = Deno.env.get("MISSL_PERMISSION_FLAGS");
  } catch {
    return null; // not granted: not launched by deno task run
  }
  if (!text) return null;
  try {
    const flags = JSON.parse(text);
    if (Array.isArray(flags) && flags.every((f) => typeof f === "string" && f.startsWith("--"))) {
      return flags;
    }
  } catch {
    // fall through
  }
  return null;
}

/**
 * This Deno's executable when it may be run, else `deno` from the PATH when that may (what
 * `--allow-run=deno` names; it may be a link to the former), else null.
 */
export async function runnableDeno(): Promise<string | null> {
  const exec = Deno.execPath();
  for (const command of [exec, "deno"]) {
    if ((await Deno.permissions.query({ name: "run", command })).state === "granted") {
      return command;
    }
  }
  return null;
}

/** The path of app/cli.ts (its URL when the framework is imported by URL). */
export function cliPath(): string {
  const url = new URL("./cli.ts", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href;
}
