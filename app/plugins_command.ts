/**
 * `plugins`: list the registered plugins of each kind with their options (type, default and
 * description, read from each plugin's zod schema).
 *
 * @module
 */
import type { Command } from "../deps.ts";
import { datasets } from "../core/dataset.ts";
import { models } from "../core/model.ts";
import { regularizers } from "../core/regularizer.ts";
import { transforms } from "../core/transform.ts";
import { losses } from "../core/loss.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { collect } from "./commands.ts";

/** Add `plugins` to `program`. */
export function addPluginsCommand(program: Command): void {
  program.command("plugins")
    .description("List the registered plugins and their options")
    .option("--json", "machine-readable output")
    .option("--plugin <module>", "also load a plugin module (repeatable)", collect, [])
    .action(async (opts: { json?: boolean; plugin: string[] }) => {
      registerBuiltins();
      await loadPluginModules(opts.plugin);
      const kinds = {
        dataset: datasets,
        model: models,
        transform: transforms,
        regularizer: regularizers,
        loss: losses,
      };
      const out: Record<
        string,
        Array<{ id: string; description: string; options: Record<string, OptionInfo> }>
      > = {};
      for (const [kind, registry] of Object.entries(kinds)) {
        out[kind] = registry.entries().map((e) => ({
          id: e.id,
          description: e.description ?? "",
          options: describeOptions(e.options),
        }));
      }
      if (opts.json) {
        console.log(JSON.stringify(out, null, 2));
        return;
      }
      for (const [kind, entries] of Object.entries(out)) {
        console.log(`${kind === "loss" ? "losses" : `${kind}s`}:`);
        for (const e of entries) {
          console.log(`  ${e.id}  ${e.description}`);
          for (const [k, o] of Object.entries(e.options)) {
            console.log(`      ${k}: ${o.type}${o.description ? `  ${o.description}` : ""}`);
          }
        }
      }
    });
}

/** What `plugins` shows of one option: its type (and default) and its `.describe()` text. */
interface OptionInfo {
  /** The zod type, with the allowed values of an enum and the default: `number = 16`. */
  type: string;
  /** The field's description (zod `.describe()`), `""` when it has none. */
  description: string;
}

/** The type, default and description of each field of a zod object schema. */
function describeOptions(schema: unknown): Record<string, OptionInfo> {
  // deno-lint-ignore no-explicit-any
  let s = schema as any;
  while (s?._def?.innerType || s?._def?.schema) s = s._def.innerType ?? s._def.schema;
  const shape = typeof s?._def?.shape === "function" ? s._def.shape() : s?._def?.shape;
  if (!shape) return {};
  const out: Record<string, OptionInfo> = {};
  for (const [key, field] of Object.entries(shape)) {
    // deno-lint-ignore no-explicit-any
    let f = field as any;
    let def: unknown = undefined;
    let description: string | undefined;
    const kinds: string[] = [];
    while (f?._def) {
      if (f._def.typeName === "ZodDefault") def = f._def.defaultValue();
      description ??= f._def.description;
      kinds.push(f._def.typeName.replace(/^Zod/, "").toLowerCase());
      if (!f._def.innerType && !f._def.schema) break;
      f = f._def.innerType ?? f._def.schema;
    }
    const kind = kinds.filter((k) => !["default", "optional", "effects"].includes(k)).join(" ");
    const values = f?._def?.values ? ` (${f._def.values.join(" | ")})` : "";
    out[key] = {
      type: `${kind}${values}${def !== undefined ? ` = ${JSON.stringify(def)}` : ""}`,
      description: description ?? "",
    };
  }
  return out;
}
