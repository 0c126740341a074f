/**
 * What the second thread is worth on a real run (issue 15): `recipes/acdc-cpu/ours-kl.yaml` for a
 * few iterations with `threads: 1` and `threads: 2`, alternately, `--rounds` times, and the
 * seconds of training per iteration over iterations 11 to the last (the first ten warm up and
 * compile). Prints one JSON line per run and a summary line with the ratio of each round and
 * their median. Run it with the machine otherwise idle: the two threads share its two cores with
 * anything else.
 *
 * ```sh
 * deno task bench:threads [--rounds 3] [--iterations 60] [--recipe recipes/acdc-cpu/ours-kl.yaml]
 * ```
 *
 * Needs the ACDC data the recipe names (`../shared/data/acdc`); says so and exits when it is absent.
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    iterations: { type: "string", default: "60" },
    recipe: { type: "string", default: "recipes/acdc-cpu/ours-kl.yaml" },
  },
});
const rounds = Number(values.rounds), iterations = Number(values.iterations);
if (!(rounds >= 1) || !(iterations > 20)) {
  console.error("acdc_threads: --rounds must be at least 1 and --iterations above 20");
  Deno.exit(2);
}
const data = new URL("../../shared/data/acdc", import.meta.url);
try {
  Deno.statSync(data);
} catch {
  console.error(`acdc_threads: no ACDC data at ${data.pathname}: nothing measured`);
  Deno.exit(0);
}

/** Seconds of training per iteration over iterations 11 to the last of one run. */
async function secondsPerIteration(threads: number): Promise<number> {
  const out = await Deno.makeTempDir({ prefix: "acdc-threads-" });
  try {
    const { code, stderr } = await new Deno.Command("deno", {
      args: [
        "task",
        "--quiet",
        "run",
        values.recipe,
        "--set",
        `trainer.iterations=${iterations}`,
        "--set",
        `trainer.validateEvery=${iterations * 10}`,
        "--set",
        `threads=${threads}`,
        "--out",
        `${out}/run`,
        "--quiet",
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(`run with threads ${threads} failed:\n${new TextDecoder().decode(stderr)}`);
    }
    const rows = Deno.readTextFileSync(`${out}/run/metrics.jsonl`).split("\n")
      .filter((l) => l.includes('"seconds_train"')).map((l) => JSON.parse(l));
    const at = (i: number) => rows.find((r) => r.iteration === i)?.seconds_train;
    const a = at(10), b = at(iterations);
    if (a === undefined || b === undefined) {
      throw new Error("metrics.jsonl lacks iteration 10 or the last");
    }
    return (b - a) / (iterations - 10);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

const ratios: number[] = [];
for (let r = 1; r <= rounds; r++) {
  const s: Record<number, number> = {};
  for (const threads of [1, 2]) {
    s[threads] = await secondsPerIteration(threads);
    console.log(JSON.stringify({
      round: r,
      threads,
      s_per_it: Math.round(s[threads] * 1e4) / 1e4,
    }));
  }
  ratios.push(s[1] / s[2]);
}
const sorted = [...ratios].sort((a, b) => a - b);
const median = sorted.length % 2
  ? sorted[(sorted.length - 1) / 2]
  : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
console.log(JSON.stringify({
  recipe: values.recipe,
  iterations,
  speedup_per_round: ratios.map((x) => Math.round(x * 1000) / 1000),
  speedup_median: Math.round(median * 1000) / 1000,
}));
