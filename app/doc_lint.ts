/**
 * `deno task doc:lint`: `deno doc --lint mod.ts`, held to what this repository can fix.
 *
 * The public API hands out TensorFlow.js tensors and zod schemas on purpose, and `mod.ts`
 * re-exports the `tf` and `z` namespaces so that plugins use the framework's own instances.
 * `deno doc --lint` then also lints those two packages' declarations (about 1,700 diagnostics in
 * the npm cache), and reports each reference from our types to a tfjs or zod type
 * (`tf.Tensor4D`, `z.ZodType`, `z.infer`'s `TypeOf`) as a reference to a private type, because
 * those packages are not re-exported type by type (doing so would pull their declarations into
 * the lint as well). This command runs the lint and fails on every other diagnostic: anything
 * located in this repository, a missing doc comment, a type of ours that `mod.ts` forgets to
 * export, a missing return type.
 *
 * @module
 */
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Types of tfjs and zod that our public types may reference without `mod.ts` exporting them. */
export const EXTERNAL_TYPES: readonly string[] = [
  // @tensorflow/tfjs-core
  "Tensor",
  "Tensor1D",
  "Tensor2D",
  "Tensor3D",
  "Tensor4D",
  "Scalar",
  "Variable",
  "TensorInfo",
  "Rank",
  "DataType",
  // zod
  "ZodType",
  "ZodTypeDef",
  "ZodTypeAny",
  "ZodString",
  "ZodNumber",
  "ZodDefault",
  "ZodEnum",
  "ZodUnion",
  "ZodLiteral",
  "ZodOptional",
  "ZodArray",
  "TypeOf",
];

/**
 * Zod schemas whose option type is derived from them (`type X = z.infer<typeof schema>`, or a
 * factory typed with it): deno doc wants such a schema exported with an explicit type, which
 * would mean writing each of these option types twice, as an interface and as a schema.
 */
export const SCHEMA_DERIVED: readonly string[] = [
  "recipeSchema",
  "crossEntropyOptions",
  "diceOptions",
  "diceCeOptions",
  "klOptions",
  "miOptions",
  "mseOptions",
  "entropyMinOptions",
  "meanTeacherOptions",
  "unetOptions",
];

/** One diagnostic of `deno doc --lint`. */
export interface DocDiagnostic {
  /** The rule, e.g. `missing-jsdoc`. */
  rule: string;
  /** The message, e.g. `exported symbol is missing JSDoc documentation`. */
  message: string;
  /** `path:line:column` as deno prints it. */
  location: string;
}

/** The diagnostics in the (colourless) output of `deno doc --lint`. */
export function parseDocLint(output: string): DocDiagnostic[] {
  const out: DocDiagnostic[] = [];
  const pattern = /^error\[([a-z-]+)\]: (.*)\n\s*--> (\S+)/gm;
  for (const m of output.matchAll(pattern)) {
    out.push({ rule: m[1], message: m[2], location: m[3] });
  }
  return out;
}

/**
 * The diagnostics this repository must fix: those located under `root`, except references to
 * the tfjs and zod types of {@linkcode EXTERNAL_TYPES} and the schemas of
 * {@linkcode SCHEMA_DERIVED}, and the re-exports of whole packages (`export * as tf from
 * "npm:..."`, whose doc comment deno doc does not attach), as `lineOf` tells them.
 */
export function ownDiagnostics(
  diagnostics: DocDiagnostic[],
  root: string,
  lineOf: (location: string) => string = () => "",
): DocDiagnostic[] {
  const prefix = resolve(root) + "/";
  return diagnostics.filter((d) => {
    if (!d.location.startsWith(prefix)) return false;
    const ref = /references private type '([^']+)'/.exec(d.message);
    if (d.rule === "private-type-ref" && ref !== null) {
      return !EXTERNAL_TYPES.includes(ref[1]) && !SCHEMA_DERIVED.includes(ref[1]);
    }
    return !/^\s*export \* as \w+ from "npm:/.test(lineOf(d.location));
  });
}

/** The source line at `path:line:column`. */
function sourceLine(location: string): string {
  const m = /^(.*):(\d+):\d+$/.exec(location);
  if (m === null) return "";
  try {
    return Deno.readTextFileSync(m[1]).split("\n")[Number(m[2]) - 1] ?? "";
  } catch {
    return "";
  }
}

if (import.meta.main) {
  const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
  const entries = Deno.args.length > 0 ? Deno.args : ["mod.ts"];
  const { stdout, stderr } = await new Deno.Command("deno", {
    args: ["doc", "--lint", ...entries],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  const all = parseDocLint(text);
  const own = ownDiagnostics(all, root, sourceLine);
  for (const d of own) {
    console.error(`${relative(root, d.location)}: ${d.rule}: ${d.message}`);
  }
  console.error(
    `doc lint of ${entries.join(", ")}: ${own.length} to fix here; ${
      all.length - own.length
    } left out (inside tfjs and zod, or references to their types)`,
  );
  Deno.exit(own.length > 0 ? 1 : 0);
}
