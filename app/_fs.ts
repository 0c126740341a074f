/**
 * Small file-system checks shared by the commands.
 *
 * @module
 */

/** Whether `path` exists (a file, a folder or anything else `Deno.stat` reaches). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `path` is a folder (following links); `false` when it does not exist. */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}
