/**
 * Command-line interface: `run`, `validate`, `plugins`, `eval`, `predict`, `init`, `cache`,
 * `bench`, `sweep`, `table`, `plot` (installed as `mi-ssl` by `app/mi_ssl.ts`).
 *
 * Errors the user can fix end with one message on standard error and exit code 2.
 *
 * This file builds the program and maps errors to exit codes; each command with more than a few
 * lines has its own module: `run_command.ts`, `eval_command.ts`, `predict_command.ts`,
 * `plugins_command.ts`, `cache_command.ts` (`dice_table.ts` is the table `run` and `eval` print),
 * `bench.ts`, and `results_cli.ts` for `sweep`, `table` and `plot`.
 *
 * @module
 */
import { join } from "node:path";
import { Command, CommanderError } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { InterruptedError } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { addBenchCommand } from "./bench.ts";
import { addCacheCommand } from "./cache_command.ts";
import { collect } from "./commands.ts";
import { addEvalCommand } from "./eval_command.ts";
import { addServeCommand } from "./serve.ts";
import { taskCwd } from "./task_cwd.ts";
import { initProject } from "./init.ts";
import { PartialFailure } from "./partial_failure.ts";
import { addPluginsCommand } from "./plugins_command.ts";
import { addPredictCommand } from "./predict_command.ts";
import { addResultCommands } from "./results_cli.ts";
import { addRunCommand } from "./run_command.ts";

// The commands' parts, importable from here as before they moved.
export { formatSeconds } from "./run_command.ts";
export { fileAxisOrder } from "./predict_command.ts";

/** Build the CLI program (exported for tests). */
export function buildProgram(): Command {
  registerBuiltins();
  const program = new Command()
    .name("mi-ssl")
    .description(
      "Semi-supervised medical image segmentation with mutual-information regularisation " +
        "(Peng et al., MIDL 2020)",
    )
    .exitOverride()
    .showHelpAfterError(false);

  addRunCommand(program, main);

  program.command("validate")
    .description("Check recipes (schema, extends, plugin ids and options) without training")
    .argument("<recipes...>", "YAML recipe files")
    .option("--set <path=value>", "override a recipe field (repeatable)", collect, [])
    .action(async (files: string[], opts: { set: string[] }) => {
      registerBuiltins();
      for (const file of files) {
        const loaded = await loadRecipe(file, { set: opts.set });
        await loadPluginModules(loaded.recipe.plugins);
        validatePluginOptions(loaded.recipe, loaded.file);
        console.log(`ok ${file}`);
      }
    });

  addPluginsCommand(program);
  addEvalCommand(program);
  addPredictCommand(program);
  addCacheCommand(program);

  program.command("init")
    .description(
      "Write a project template into a folder: a recipe on the folder dataset (data/images, " +
        "data/labels) and a regularizer plugin it loads",
    )
    .argument("<folder>", "the project folder (created where missing)")
    .option("--force", "overwrite template files that exist already")
    .action(async (folder: string, opts: { force?: boolean }) => {
      const files = await initProject(folder, { force: opts.force });
      for (const f of files) console.log(f);
      console.log(
        `\nput image / label pairs in ${join(folder, "data", "images")} and ` +
          `${join(folder, "data", "labels")}, then, in ${folder}: mi-ssl run recipe.yaml`,
      );
    });

  addBenchCommand(program);
  addResultCommands(program);
  addServeCommand(program, () => taskCwd() ?? Deno.cwd());

  return program;
}

/** Run the CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof InterruptedError) {
      console.error(error.message);
      return error.exitCode;
    }
    if (error instanceof PartialFailure) {
      console.error(`error: ${error.message}`);
      return 1;
    }
    if (error instanceof UserError || (error as Error)?.name === "UserError") {
      console.error(`error: ${(error as Error).message}`);
      return 2;
    }
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      console.error(
        `error: this run was not granted a permission it needs: ${(error as Error).message}\n` +
          `deno task run / eval grant a run only what its recipes need (README, "Permissions"); ` +
          `grant more with --grant, e.g. deno task run --grant read=/data recipe.yaml, or run ` +
          `deno run <flags> app/cli.ts run ... yourself`,
      );
      return 2;
    }
    throw error;
  }
}

if (import.meta.main) {
  // every path on the command line is relative to where it was typed, for every command
  const cwd = taskCwd();
  if (cwd !== undefined) Deno.chdir(cwd);
  Deno.exit(await main(Deno.args));
}
