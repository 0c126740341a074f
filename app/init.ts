/**
 * `mi-ssl init <folder>`: a project folder of one's own that runs as it is written: a recipe on
 * the `folder` dataset (`data/images/X.nii.gz` with `data/labels/X.nii.gz`), a regularizer plugin
 * that the recipe loads, and a README that says what to put where and what to type.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { UserError } from "../core/errors.ts";

/** The files {@linkcode initProject} writes, relative to the folder. */
export const TEMPLATE_FILES = ["recipe.yaml", "my_regularizer.ts", "README.md"] as const;

/** Options of {@linkcode initProject}. */
export interface InitOptions {
  /**
   * Where the plugin imports the framework from (its `mod.ts`). @default this framework's
   * `mod.ts` (a `file:` URL in a checkout, the https URL when installed from one)
   */
  modUrl?: string;
  /** Overwrite template files that exist already. @default {false} */
  force?: boolean;
}

/** The recipe of the template. */
export function templateRecipe(): string {
  return `# A recipe of your own. Put image / label pairs with the same name in data/images and
# data/labels (NIfTI, MetaImage or HDF5: data/images/case01.nii.gz with data/labels/case01.nii.gz),
# then, from this folder:
#   mi-ssl validate recipe.yaml
#   mi-ssl run recipe.yaml --out runs/first
#   mi-ssl eval runs/first
#   mi-ssl predict runs/first data/images --out predictions
# Every field: the framework's docs/recipes.md; every plugin and option: mi-ssl plugins.
method: mine
seed: 1
backend: auto
# plugin modules, relative to this file: they register their plugins when imported
plugins: ["./my_regularizer.ts"]
dataset:
  type: folder
  root: data
  size: 64
  # classes: [background, organ] # else the largest label value + 1
  # patients per split: one labeled, one unlabeled, one for validation at least
  split: { labeled: 1, unlabeled: 1, validation: 1 }
model: { type: unet, base: 8, depth: 3 }
transform: { type: affine, rotation: 30, shear: 10, scale: [0.8, 1.2] }
lambda: 0.1
regularizers:
  - { type: kl, weight: 1 }
  # the plugin of my_regularizer.ts
  - { type: my-smoothness, weight: 0.5 }
trainer: { iterations: 200, labeledBatch: 4, unlabeledBatch: 4, validateEvery: 50, logEvery: 10 }
output: { dir: runs }
`;
}

/** The plugin stub of the template, importing the framework from `modUrl`. */
export function templatePlugin(modUrl: string): string {
  return `// A regularizer plugin: total variation of the predictions on unlabeled images (a smoothness
// prior). The recipe loads it (plugins: ["./my_regularizer.ts"]) and uses it by its id
// (- { type: my-smoothness, weight: 0.5 }). Change the id, the options and loss() to make it yours;
// the framework's docs/plugins.md describes the other kinds (loss, transform, dataset, model).
import { regularizers, tf, z } from ${JSON.stringify(modUrl)};

const options = z.object({
  /** Which map to smooth: f(x_u), or T^-1(f(T(x_u))). */
  on: z.enum(["unlabeled", "transformed"]).default("unlabeled"),
}).strict();

regularizers.register({
  id: "my-smoothness",
  description: "Mean absolute difference of the class probabilities of neighbouring pixels",
  options,
  create: (opts: z.infer<typeof options>) => ({
    id: "my-smoothness",
    needsUnlabeled: true,
    // one scalar, computed synchronously inside tf.tidy; the trainer applies the weight
    loss: (ctx) =>
      tf.tidy(() => {
        const p = opts.on === "unlabeled" ? ctx.probsUnlabeled : ctx.probsTransformedBack;
        const [b, h, w, c] = p.shape;
        const top = tf.slice(p, [0, 0, 0, 0], [b, h - 1, w, c]);
        const left = tf.slice(p, [0, 0, 0, 0], [b, h, w - 1, c]);
        const dy = tf.sub(tf.slice(p, [0, 1, 0, 0], [b, h - 1, w, c]), top);
        const dx = tf.sub(tf.slice(p, [0, 0, 1, 0], [b, h, w - 1, c]), left);
        return tf.add(tf.mean(tf.abs(dy)), tf.mean(tf.abs(dx))) as tf.Scalar;
      }),
  }),
});
`;
}

/** The README of the template. */
export function templateReadme(): string {
  return `# My segmentation project

- \`recipe.yaml\`: what to train (the \`folder\` dataset in \`data/\`, a U-Net, the regularizers).
- \`my_regularizer.ts\`: a regularizer plugin of your own, loaded by the recipe.
- \`data/images\`, \`data/labels\`: image / label pairs with the same name (\`case01.nii.gz\` in
  both).

From this folder (every path is relative to it):

\`\`\`sh
mi-ssl validate recipe.yaml                           # check the recipe and the plugin
mi-ssl run recipe.yaml --out runs/first               # train (Ctrl-C checkpoints, --resume goes on)
mi-ssl eval runs/first                                # Dice and HD95 on the validation scans
mi-ssl predict runs/first data/images --out predictions # segment scans, on their own grids
\`\`\`
`;
}

/**
 * Write the template into `folder` (created where missing): {@linkcode TEMPLATE_FILES} and empty
 * `data/images` and `data/labels` folders. Returns the files written.
 *
 * @throws {UserError} Where a template file exists already (unless `force`) or the folder cannot
 * be written.
 */
export async function initProject(folder: string, options: InitOptions = {}): Promise<string[]> {
  const modUrl = options.modUrl ?? new URL("../mod.ts", import.meta.url).href;
  const dir = resolve(folder);
  const contents: Record<(typeof TEMPLATE_FILES)[number], string> = {
    "recipe.yaml": templateRecipe(),
    "my_regularizer.ts": templatePlugin(modUrl),
    "README.md": templateReadme(),
  };
  if (!options.force) {
    const existing = [];
    for (const name of TEMPLATE_FILES) {
      try {
        await Deno.lstat(join(dir, name));
        existing.push(name);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    if (existing.length) {
      throw new UserError(
        `Cannot write the template into "${folder}": it holds ${existing.join(", ")} already ` +
          `(--force overwrites them)`,
      );
    }
  }
  const written: string[] = [];
  try {
    for (const sub of ["images", "labels"]) {
      await Deno.mkdir(join(dir, "data", sub), { recursive: true });
    }
    for (const name of TEMPLATE_FILES) {
      const path = join(dir, name);
      await Deno.writeTextFile(path, contents[name]);
      written.push(path);
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`Cannot write the template into "${folder}": ${(error as Error).message}`);
  }
  return written;
}
