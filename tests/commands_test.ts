import assert from "node:assert/strict";
import { buildProgram } from "../app/cli.ts";
import { LAUNCHED_COMMANDS, setOverrides } from "../app/commands.ts";
import { parseEvalArgs, parseLaunchArgs, parsePredictArgs } from "../app/launcher.ts";
import { UserError } from "../core/errors.ts";

Deno.test("the CLI's run, eval and predict have exactly the options of the command table", () => {
  const program = buildProgram();
  for (const spec of Object.values(LAUNCHED_COMMANDS)) {
    const command = program.commands.find((c) => c.name() === spec.name)!;
    assert.deepEqual(
      command.options.map((o) => o.flags),
      spec.options.map((o) => o.flags),
      spec.name,
    );
  }
});

Deno.test("the launcher parses every option of the command table (each given once)", () => {
  const parsers = { run: parseLaunchArgs, eval: parseEvalArgs, predict: parsePredictArgs };
  for (const [name, spec] of Object.entries(LAUNCHED_COMMANDS)) {
    const args = spec.options.flatMap((o) =>
      /[<[]/.test(o.flags) ? [o.flags.split(" ")[0], "1"] : [o.flags]
    );
    parsers[name as keyof typeof parsers](["x", ...args]);
  }
});

Deno.test("setOverrides() turns --seed and --backend into --set, after --set, and names an unknown backend", () => {
  assert.deepEqual(setOverrides({ set: ["a=1"], seed: "3", backend: "wasm" }), [
    "a=1",
    "seed=3",
    "backend=wasm",
  ]);
  assert.deepEqual(setOverrides({}), []);
  assert.throws(() => setOverrides({ backend: "cuda" }), UserError);
});
