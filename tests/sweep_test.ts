import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parseSeeds, planRuns, runArgs, shellQuote, slurmScript } from "../app/sweep.ts";
import { cli } from "./_helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const TINY = (name: string, method: string, regs: string) =>
  `name: ${name}
method: ${method}
backend: wasm
dataset: { type: phantom, patients: 4, slicesPerPatient: 2, size: 32, split: { labeled: 1, unlabeled: 1, validation: 2 } }
model: { type: unet, base: 4, depth: 3 }
regularizers: ${regs}
trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 }
`;

async function withRecipes(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.yaml`, TINY("tiny-a", "ours-kl", "[{ type: kl }]"));
    await Deno.writeTextFile(`${dir}/b.yaml`, TINY("tiny-b", "partial", "[]"));
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("parseSeeds: lists and ranges; bad input is a user error", () => {
  assert.deepEqual(parseSeeds("1,2,3"), [1, 2, 3]);
  assert.deepEqual(parseSeeds("1-3, 10"), [1, 2, 3, 10]);
  assert.throws(() => parseSeeds("1,x"), /"x" is not a seed/);
  assert.throws(() => parseSeeds("2,2"), /given twice/);
  assert.throws(() => parseSeeds("3-1"), /bad range/);
});

Deno.test("planRuns: <out>/<recipe name>/seed<N>, recipes x seeds; shared names are refused", async () => {
  await withRecipes(async (dir) => {
    const runs = await planRuns([`${dir}/a.yaml`, `${dir}/b.yaml`], { seeds: [1, 2], out: "x/" });
    assert.deepEqual(runs.map((r) => r.dir), [
      "x/tiny-a/seed1",
      "x/tiny-a/seed2",
      "x/tiny-b/seed1",
      "x/tiny-b/seed2",
    ]);
    const own = await planRuns([`${dir}/a.yaml`], { set: ["seed=7"] });
    assert.deepEqual(own.map((r) => [r.dir, r.seed]), [["runs/tiny-a/seed7", 7]]);
    await assert.rejects(
      () => planRuns([`${dir}/a.yaml`, `${dir}/b.yaml`], { set: ["name=same"] }),
      /same name "same"/,
    );
    assert.deepEqual(runArgs(runs[0], "interrupted", { quiet: true }), [
      "run",
      "--resume",
      "x/tiny-a/seed1",
      "--quiet",
    ]);
    assert.deepEqual(runArgs(runs[1], "new", { set: ["lambda=1"], backend: "wasm" }), [
      "run",
      `${dir}/a.yaml`,
      "--seed",
      "2",
      "--out",
      "x/tiny-a/seed2",
      "--set",
      "lambda=1",
      "--backend",
      "wasm",
    ]);
  });
});

Deno.test("sweep --slurm writes an array job: one task per (recipe, seed), valid bash", async () => {
  await withRecipes(async (dir) => {
    const file = `${dir}/job.sbatch`;
    const res = await cli([
      "sweep",
      `${dir}/a.yaml`,
      `${dir}/b.yaml`,
      "--seeds",
      "1,2,3",
      "--slurm",
      "--out",
      file,
      "--partition",
      "gpu",
      "--time",
      "04:00:00",
      "--cpus",
      "4",
      "--mem",
      "16G",
      "--gpus",
      "1",
      "--set",
      "lambda=0.5",
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /6 task\(s\).*\n.*sbatch/);
    const script = await Deno.readTextFile(file);
    assert.ok(script.startsWith("#!/bin/bash\n"));
    assert.match(script, /^#SBATCH --array=0-5$/m);
    for (
      const line of [
        "#SBATCH --partition=gpu",
        "#SBATCH --time=04:00:00",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --gres=gpu:1",
      ]
    ) assert.ok(script.includes(`\n${line}\n`), line);
    // each (recipe, seed) pair once, in a bash array indexed by the task id
    let i = 0;
    for (const [r, name] of [["a", "tiny-a"], ["b", "tiny-b"]]) {
      for (const seed of [1, 2, 3]) {
        // absolute: a compute node starts the task in the submission folder, not here
        const entry = `RECIPE[${i}]=${shellQuote(`${dir}/${r}.yaml`)}; SEED[${i}]=${seed}; ` +
          `OUT[${i}]=${shellQuote(`${ROOT}runs/${name}/seed${seed}`)}`;
        assert.ok(script.includes(`\n${entry}\n`), entry);
        i++;
      }
    }
    assert.equal((script.match(/^RECIPE\[/gm) ?? []).length, 6);
    assert.match(script, /i="\$\{SLURM_ARRAY_TASK_ID:\?/);
    assert.match(
      script,
      /exec "\$DENO" task --config "\$ROOT\/deno\.json" run "\$recipe" --seed "\$seed" --out "\$out" \\\n {2}\$\{extra\[@\]\+"\$\{extra\[@\]\}"\}/,
    );
    assert.ok(script.includes(`\nROOT=${shellQuote(ROOT.replace(/\/$/, ""))} `), "the framework");
    assert.match(script, /extra=\(--set lambda=0\.5\)/);
    // bash syntax check
    const syntax = await new Deno.Command("bash", { args: ["-n", file], stderr: "piped" }).output();
    assert.equal(syntax.code, 0, new TextDecoder().decode(syntax.stderr));
    // run task 4 (its run folder moved into dir) with stand-in Denos that print their arguments:
    // the one that wrote the script (unless MISSL_DENO names another), else the PATH's
    await Deno.mkdir(`${dir}/bin`);
    await Deno.mkdir(`${dir}/recorded`);
    await Deno.writeTextFile(`${dir}/bin/deno`, '#!/bin/bash\necho "deno $*"\n', { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/recorded/deno`, '#!/bin/bash\necho "recorded $*"\n', {
      mode: 0o755,
    });
    const out4 = `${dir}/runs/tiny-b/seed2`;
    const recorded = `\${MISSL_DENO:-${Deno.execPath()}}`;
    assert.ok(script.includes(recorded), "the Deno that wrote the script");
    await Deno.writeTextFile(
      file,
      script.replace(shellQuote(`${ROOT}runs/tiny-b/seed2`), out4)
        .replace(recorded, `\${MISSL_DENO:-${dir}/recorded/deno}`),
    );
    const task4 = (env: Record<string, string>) =>
      new Deno.Command("bash", {
        args: [file],
        cwd: dir,
        env: { PATH: `${dir}/bin:/usr/bin:/bin`, SLURM_ARRAY_TASK_ID: "4", ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
    const root = ROOT.replace(/\/$/, "");
    const task = await task4({});
    assert.equal(task.code, 0, new TextDecoder().decode(task.stderr));
    assert.ok(
      new TextDecoder().decode(task.stdout).includes(
        `\nrecorded task --config ${root}/deno.json run ${dir}/b.yaml --seed 2 --out ${out4} ` +
          `--set lambda=0.5\n`,
      ),
      new TextDecoder().decode(task.stdout),
    );
    const other = await task4({ MISSL_DENO: `${dir}/bin/deno` });
    assert.match(new TextDecoder().decode(other.stdout), /^deno task --config/m);
    await Deno.chmod(`${dir}/recorded/deno`, 0o644); // not on this node: the PATH's
    const onPath = await task4({});
    assert.match(new TextDecoder().decode(onPath.stdout), /^deno task --config/m);
    await Deno.mkdir(out4, { recursive: true });
    await Deno.writeTextFile(`${out4}/metrics.jsonl`, "{}\n");
    // a task of another submission is training into it (before its first checkpoint): left be
    await Deno.writeTextFile(`${out4}/run.lock`, '{"pid":4242}\n');
    const held = await Deno.open(`${out4}/run.lock`, { write: true });
    assert.ok(await held.tryLock(true));
    try {
      const busy = await task4({});
      assert.equal(busy.code, 0);
      assert.match(
        new TextDecoder().decode(busy.stdout),
        /is being trained by another process \(\{"pid":4242\}\); nothing to do/,
      );
      assert.equal(await exists(`${out4}/metrics.jsonl`), true, "its metrics stay");
    } finally {
      held.close();
    }
    // a task that died before its first checkpoint: its leftovers go, the run starts afresh
    await task4({});
    assert.equal(await exists(`${out4}/metrics.jsonl`), false);
    // an interrupted one resumes
    await Deno.writeTextFile(`${out4}/latest.ckpt`, "");
    const resumed = await task4({});
    assert.ok(
      new TextDecoder().decode(resumed.stdout).includes(
        `\ndeno task --config ${root}/deno.json run --resume ${out4}\n`,
      ),
    );
    // a finished one exits at once
    await Deno.writeTextFile(`${out4}/summary.json`, "{}");
    const finished = await task4({});
    assert.match(new TextDecoder().decode(finished.stdout), /is finished.*nothing to do/);
  });
});

Deno.test("slurmScript refuses bad Slurm options", () => {
  const runs = [{ recipe: "r.yaml", name: "r", seed: 1, dir: "runs/r/seed1" }];
  assert.throws(() => slurmScript(runs, { time: "4 hours" }), /--time/);
  assert.throws(() => slurmScript(runs, { mem: "lots" }), /--mem/);
  assert.throws(() => slurmScript(runs, { partition: "a b" }), /--partition/);
  assert.match(slurmScript(runs), /#SBATCH --array=0-0\n/);
  assert.doesNotMatch(slurmScript(runs), /--partition|--gres/);
});

Deno.test("run with several recipes and seeds: deterministic directories, finished runs skipped, interrupted resumed", async () => {
  await withRecipes(async (dir) => {
    const out = `${dir}/runs`;
    const args = [
      "run",
      `${dir}/a.yaml`,
      `${dir}/b.yaml`,
      "--seeds",
      "1,2",
      "--out",
      out,
      "--quiet",
    ];
    let res = await cli(args);
    assert.equal(res.code, 0, res.stderr);
    for (const name of ["tiny-a", "tiny-b"]) {
      for (const s of [1, 2]) {
        assert.ok(await exists(`${out}/${name}/seed${s}/summary.json`), `${name} seed ${s}`);
        const summary = JSON.parse(await Deno.readTextFile(`${out}/${name}/seed${s}/summary.json`));
        assert.equal(summary.seed, s);
      }
    }
    assert.match(res.stdout, /4 run\(s\): 4 trained, 0 already finished, 0 failed/);
    // again: everything is skipped with a message
    res = await cli(args);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(
      (res.stderr.match(/^skip .*: finished \(summary\.json exists\)$/gm) ?? []).length,
      4,
    );
    // an interrupted run (latest.ckpt, no summary.json) is resumed
    await Deno.remove(`${out}/tiny-a/seed2/summary.json`);
    res = await cli(args);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /tiny-a seed 2 -> .*tiny-a\/seed2 \(resuming\)/);
    assert.ok(await exists(`${out}/tiny-a/seed2/summary.json`));
    // one another process trains into (it holds run.lock): neither resumed nor cleared
    const busy = `${out}/tiny-b/seed1`;
    await Deno.rename(`${busy}/summary.json`, `${dir}/kept.json`);
    await Deno.writeTextFile(`${busy}/run.lock`, '{"pid":4242,"started":"then"}\n');
    const metricsBefore = await Deno.readTextFile(`${busy}/metrics.jsonl`);
    const held = await Deno.open(`${busy}/run.lock`, { write: true });
    assert.ok(await held.tryLock(true));
    try {
      res = await cli(args);
      assert.equal(res.code, 0, res.stderr);
      assert.match(
        res.stderr,
        /skip .*tiny-b\/seed1: being trained by process 4242 \(since then\)/,
      );
      assert.match(res.stdout, /1 being trained by another process/);
      assert.equal(await Deno.readTextFile(`${busy}/metrics.jsonl`), metricsBefore);
      assert.equal(await exists(`${busy}/summary.json`), false);
      const listed = await cli([
        "sweep",
        `${dir}/a.yaml`,
        `${dir}/b.yaml`,
        "--seeds",
        "1,2",
        "--runs",
        out,
      ]);
      assert.match(listed.stdout, /^running +.*tiny-b\/seed1/m);
    } finally {
      held.close();
    }
    await Deno.rename(`${dir}/kept.json`, `${busy}/summary.json`);
    // the results table over the sweep
    const table = await cli(["table", out]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /\| partial +\| +2 \|/);
    assert.match(table.stdout, /\| ours-kl +\| +2 \|.* - \|/);
  });
});

Deno.test("run --jobs 2 runs subprocesses with the same permissions; without --allow-run it says how", async () => {
  await withRecipes(async (dir) => {
    const out = `${dir}/par`;
    const args = [
      "run",
      `${dir}/a.yaml`,
      `${dir}/b.yaml`,
      "--seed",
      "3",
      "--jobs",
      "2",
      "--out",
      out,
    ];
    let res = await cli(args);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--allow-run=deno/);
    res = await cli(args, { allowRun: true });
    assert.equal(res.code, 0, res.stderr);
    assert.equal((res.stderr.match(/^start /gm) ?? []).length, 2);
    assert.equal((res.stderr.match(/\] done tiny-. seed 3: mean Dice/gm) ?? []).length, 2);
    for (const name of ["tiny-a", "tiny-b"]) {
      assert.ok(await exists(`${out}/${name}/seed3/summary.json`));
      assert.match(await Deno.readTextFile(`${out}/${name}/seed3/run.log`), /run directory:/);
    }
  });
});

Deno.test("run with one recipe and --resume together with several recipes is refused", async () => {
  await withRecipes(async (dir) => {
    const res = await cli(["run", `${dir}/a.yaml`, "--seeds", "1", "--resume", dir]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--resume takes one run directory/);
    const both = await cli(["run", `${dir}/a.yaml`, "--seeds", "1,2", "--seed", "3"]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--seed or --seeds, not both/);
  });
});
