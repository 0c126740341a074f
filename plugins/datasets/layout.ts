/**
 * A dataset's file layout: its data folder ({@linkcode resolveRoot}), the names in it
 * ({@linkcode listNames}, {@linkcode readList}) and its cases ({@linkcode LayoutCase}; an image
 * file and a label file in any format `readVolume` knows: {@linkcode pairCase}).
 *
 * @module
 */
import { resolve } from "node:path";
import { UserError } from "../../core/errors.ts";
import { readHdf5Datasets } from "../../io/hdf5.ts";
import { readVolume, volumeFormat } from "../../io/volume.ts";
import type { RawCase } from "./preprocess.ts";

/**
 * The absolute data folder: `root` resolved against the recipe's folder.
 *
 * @throws {UserError} When it does not exist or is not a folder.
 */
export async function resolveRoot(
  datasetId: string,
  root: string,
  baseDir: string,
): Promise<string> {
  const path = resolve(baseDir, root);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    const relative = resolve(root) !== path
      ? ` (a relative root is resolved against the recipe's folder "${baseDir}")`
      : "";
    throw new UserError(
      `Cannot load dataset "${datasetId}": the data folder "${path}" does not exist${relative}`,
    );
  }
  if (!info.isDirectory) {
    throw new UserError(`Cannot load dataset "${datasetId}": "${path}" is not a folder`);
  }
  return path;
}

/** Names in a folder (files and folders, hidden and AppleDouble `._` ones left out). */
export async function listNames(
  dir: string,
  kind: "file" | "dir" | "any" = "any",
): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".")) continue;
      const isDir = e.isDirectory ||
        (e.isSymlink && (await Deno.stat(`${dir}/${e.name}`).catch(() => null))?.isDirectory);
      if (kind === "file" && isDir) continue;
      if (kind === "dir" && !isDir) continue;
      out.push(e.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return [];
    }
    throw error;
  }
  return out.sort();
}

/** The non-empty lines of a list file (`train.list`), or `null` when it does not exist. */
export async function readList(path: string): Promise<string[] | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new UserError(`Cannot read "${path}": ${(error as Error).message}`);
  }
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith("#"));
}

/** A case of a layout, before the split decides whether its labels are needed. */
export interface LayoutCase {
  /** Volume id. */
  id: string;
  /** Patient id. */
  patient: string;
  /** The files it is read from. */
  files: string[];
  /** Read it; `needsLabel` is false for unlabeled patients (a missing label is then fine). */
  read(needsLabel: boolean): Promise<RawCase>;
}

/**
 * A case read from an image file and a label file in any format {@linkcode readVolume} knows.
 *
 * @param label The label file, or `null` for an image without labels.
 */
export function pairCase(
  datasetId: string,
  ids: { id: string; patient: string },
  image: string,
  label: string | null,
): LayoutCase {
  return {
    ...ids,
    files: label ? [image, label] : [image],
    read: async (needsLabel) => {
      if (needsLabel && !label) {
        throw new UserError(
          `Cannot load dataset "${datasetId}": image "${image}" has no label file`,
        );
      }
      const readLabel = async (path: string) => {
        if (volumeFormat(path) !== "hdf5") return await readVolume(path);
        // An HDF5 label file: its `label` dataset, else its only `image` one.
        const sets = await readHdf5Datasets(path, ["label", "image"], {
          optional: ["label", "image"],
        });
        const found = sets.label ?? sets.image;
        if (!found) {
          throw new UserError(
            `Cannot read "${path}": it has neither a "label" nor an "image" dataset`,
          );
        }
        return found;
      };
      const [im, lb] = await Promise.all([readVolume(image), label ? readLabel(label) : null]);
      return { image: im, label: lb, imagePath: image, ...(label ? { labelPath: label } : {}) };
    },
  };
}
