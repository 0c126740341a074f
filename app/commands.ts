/**
 * The command table of `run`, `eval` and `predict`: their arguments and options, declared once.
 * The CLI (`app/cli.ts`) builds its commands from it with {@linkcode addCommand}; the launcher
 * (`app/launcher.ts`), which plans a command's permissions before the CLI runs, parses the same
 * command line with {@linkcode commandParser}. An option added here is known to both.
 *
 * @module
 */
import { Command } from "../deps.ts";
import { type BackendName, BACKENDS } from "../runtime/backend.ts";
import { UserError } from "../core/errors.ts";

/** One option of a command. */
export interface OptionSpec {
  /** Commander's flags: `--out <dir>`, `--quiet`. */
  flags: string;
  /** Help text. */
  description: string;
  /** Value when the option is not given (the CLI's; the launcher parses without defaults). */
  default?: string;
  /** The option may be given several times; its value is the list. @default {false} */
  repeatable?: boolean;
  /** The CLI refuses a command line without it (the launcher leaves that to the CLI). */
  required?: boolean;
}

/** One positional argument: `<run-dir>` (required), `[recipes...]` (optional, variadic). */
export interface ArgumentSpec {
  /** Commander's syntax: `<name>`, `[name]`, `<name...>`. */
  name: string;
  /** Help text. */
  description: string;
}

/** A command: its name, help, arguments and options. */
export interface CommandSpec {
  name: string;
  description: string;
  arguments: ArgumentSpec[];
  options: OptionSpec[];
}

/** `--grant`: read by the launcher, refused by the CLI started without it. */
export const GRANT_OPTION: OptionSpec = {
  flags: "--grant <kind=values>",
  description: "deno task run / eval / predict only: grant more than the launcher gives " +
    "(repeatable; kinds read, write, env, net, import, sys, run, ffi), e.g. --grant read=/data " +
    '--grant import=example.com (README, "Permissions")',
  repeatable: true,
};

const CHECKPOINT: OptionSpec = {
  flags: "--checkpoint <name>",
  description: "best | latest",
  default: "best",
};

/** `run`: train one recipe, or several runs (recipes x seeds). */
export const RUN_COMMAND: CommandSpec = {
  name: "run",
  description: "Train a recipe and evaluate it on the validation volumes (Ctrl-C writes a " +
    "checkpoint; --resume continues)",
  arguments: [{ name: "[recipes...]", description: "YAML recipe file(s)" }],
  options: [
    {
      flags: "--resume <run-dir>",
      description: "continue an interrupted run from its latest checkpoint",
    },
    {
      flags: "--set <path=value>",
      description: "override a recipe field (repeatable)",
      repeatable: true,
    },
    {
      flags: "--out <dir>",
      description:
        "run directory (default runs/<recipe>/<time>-seed<N>); with several runs, their base",
    },
    { flags: "--seed <n>", description: "random seed (same as --set seed=N)" },
    {
      flags: "--seeds <list>",
      description: "several seeds (1,2,3 or 1-3): runs <out>/<recipe name>/seed<N>",
    },
    {
      flags: "--jobs <n>",
      description: "with several runs: parallel subprocesses (needs --allow-run=deno)",
    },
    { flags: "--backend <name>", description: `backend: ${BACKENDS.join(" | ")}` },
    { flags: "--quiet", description: "no progress bar" },
    GRANT_OPTION,
  ],
};

/** `eval`: evaluate a run's checkpoint. */
export const EVAL_COMMAND: CommandSpec = {
  name: "eval",
  description: "Evaluate a run's checkpoint on a split",
  arguments: [{
    name: "<run-dir>",
    description: "run directory (holds recipe.yaml and checkpoints)",
  }],
  options: [
    { flags: "--split <split>", description: "val | test", default: "val" },
    CHECKPOINT,
    {
      flags: "--set <path=value>",
      description: "override a field of the run's recipe (repeatable)",
      repeatable: true,
    },
    { flags: "--json", description: "print the evaluation as JSON" },
    {
      flags: "--data <recipe|dir>",
      description: "evaluate on another dataset: a recipe's dataset section, or a data folder " +
        "as the run's dataset root",
    },
    {
      flags: "--export <dir>",
      description: "write each volume's prediction as <dir>/<volume id>_pred.nii.gz",
    },
    {
      flags: "--grid <grid>",
      description: "network: score (and export) on the network's grid | source: also score " +
        "each volume on its own file's grid against its stored label, and export there (the " +
        "file's shape, spacing and affine)",
      default: "network",
    },
    {
      flags: "--write",
      description: "with --grid source: add the source-grid scores to the run's summary.json " +
        "(of latest.ckpt, the final weights it describes), keeping every other key",
    },
    {
      flags: "--checkpoint-from <run-dir>",
      description: "with --write, for a run that kept no checkpoint (a results/ folder): score " +
        "the latest.ckpt of another run of the same recipe.yaml and seed (a retrain); refused " +
        "unless its network-grid Dice is the summary's on every volume",
    },
    GRANT_OPTION,
  ],
};

/** `predict`: segment scans that belong to no dataset. */
export const PREDICT_COMMAND: CommandSpec = {
  name: "predict",
  description: "Segment scans that belong to no dataset with a run; each prediction is written " +
    "on the scan's own grid (shape, spacing, affine) so that viewers overlay it",
  arguments: [
    { name: "<run-dir>", description: "run directory (holds recipe.yaml and checkpoints)" },
    {
      name: "<inputs...>",
      description: "scans: NIfTI, MetaImage, HDF5 or PNG files, or folders of them (PNG slices " +
        "grouped by <volume>_<slice>.png)",
    },
  ],
  options: [
    {
      flags: "--out <dir>",
      description: "output folder: <out>/<name>_pred.<extension>",
      required: true,
    },
    {
      flags: "--format <format>",
      description: "same (each input's format) | nifti",
      default: "same",
    },
    CHECKPOINT,
    {
      flags: "--backend <name>",
      description: `backend: ${BACKENDS.join(" | ")} (default: the run's)`,
    },
    { flags: "--json", description: "print the results as JSON" },
    GRANT_OPTION,
  ],
};

/** The commands the launcher plans, by name. */
export const LAUNCHED_COMMANDS = {
  run: RUN_COMMAND,
  eval: EVAL_COMMAND,
  predict: PREDICT_COMMAND,
} as const;

/** Commander's collector of a repeatable option: each value appended to the list. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function addOption(command: Command, o: OptionSpec, withDefaults: boolean): void {
  if (o.repeatable) {
    if (o.required && withDefaults) command.requiredOption(o.flags, o.description, collect, []);
    else command.option(o.flags, o.description, collect, []);
  } else if (o.required && withDefaults) {
    command.requiredOption(o.flags, o.description, o.default);
  } else command.option(o.flags, o.description, withDefaults ? o.default : undefined);
}

/** Add `spec` to `program` as the CLI declares it (help, defaults, required options). */
export function addCommand(program: Command, spec: CommandSpec): Command {
  const command = program.command(spec.name).description(spec.description);
  for (const a of spec.arguments) command.argument(a.name, a.description);
  for (const o of spec.options) addOption(command, o, true);
  return command;
}

/**
 * A parser of `spec`'s command line for the launcher: the same options, but every argument
 * optional and no defaults or required options (the launcher plans what it can and leaves the
 * messages to the CLI), `-h, --help` an ordinary flag, no output.
 */
export function commandParser(spec: CommandSpec): Command {
  const command = new Command()
    .name(`mi-ssl ${spec.name}`)
    .exitOverride()
    .showHelpAfterError(false)
    .helpOption(false)
    .allowUnknownOption(false);
  for (const a of spec.arguments) command.argument(a.name.replace(/^<(.*)>$/, "[$1]"));
  for (const o of spec.options) addOption(command, o, false);
  command.option("-h, --help");
  return command;
}

/**
 * The `--set` overrides of a command line: `--set` itself, then `--seed N` as `seed=N` and
 * `--backend B` as `backend=B` (checked against the known backends).
 *
 * @throws {UserError} For an unknown backend.
 */
export function setOverrides(
  opts: { set?: string[]; seed?: string; backend?: string },
): string[] {
  const set = [...(opts.set ?? [])];
  if (opts.seed !== undefined) set.push(`seed=${opts.seed}`);
  if (opts.backend !== undefined) {
    if (!BACKENDS.includes(opts.backend as BackendName)) {
      throw new UserError(
        `Unknown backend "${opts.backend}"; known backends: ${BACKENDS.join(", ")}`,
      );
    }
    set.push(`backend=${opts.backend}`);
  }
  return set;
}

/** How a subcommand of `mi-ssl` (and its `deno task`) is started. */
export interface CommandLaunch {
  /** `launcher`: app/launcher.ts plans the permissions; `cli`: app/cli.ts runs with `flags`. */
  script: "launcher" | "cli";
  /** Deno's flags for the script. */
  flags: string[];
}

/** The launcher's own flags: it reads the recipes and starts `deno run` with what they need. */
export const LAUNCHER_FLAGS = ["--allow-read", "--allow-env", "--allow-run=deno"];

/**
 * Every subcommand of `mi-ssl` and how it starts: the same Deno flags as its `deno task`
 * (`deno.json`, which a test keeps equal). `run`, `eval` and `predict` go through the launcher,
 * which grants each run what its recipe needs; the others get their task's flags (`init`, only
 * the folder it writes). `INIT_CWD` lets a task started by `deno task` (which runs in the
 * project's folder) find the folder it was typed in.
 */
export const COMMAND_LAUNCH: Record<string, CommandLaunch> = {
  run: { script: "launcher", flags: LAUNCHER_FLAGS },
  eval: { script: "launcher", flags: LAUNCHER_FLAGS },
  predict: { script: "launcher", flags: LAUNCHER_FLAGS },
  validate: { script: "cli", flags: ["--allow-read", "--allow-env"] },
  plugins: { script: "cli", flags: ["--allow-read", "--allow-env"] },
  init: { script: "cli", flags: ["--allow-read", "--allow-write", "--allow-env=INIT_CWD"] },
  cache: { script: "cli", flags: ["--allow-read", "--allow-write", "--allow-env"] },
  sweep: { script: "cli", flags: ["--allow-read", "--allow-write", "--allow-env"] },
  table: { script: "cli", flags: ["--allow-read", "--allow-env=INIT_CWD"] },
  plot: { script: "cli", flags: ["--allow-read", "--allow-write", "--allow-env"] },
  serve: {
    script: "cli",
    flags: [
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--allow-run=deno",
    ],
  },
  bench: {
    script: "cli",
    flags: ["--unstable-webgpu", "--allow-read", "--allow-env", "--allow-sys"],
  },
};
