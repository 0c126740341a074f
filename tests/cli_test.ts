import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { cli, withDir } from "./_helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const TINY = `method: tiny
backend: wasm
dataset: { type: phantom, patients: 4, slicesPerPatient: 2, size: 32, split: { labeled: 1, unlabeled: 1, validation: 2 } }
model: { type: unet, base: 4, depth: 3 }
regularizers: [{ type: kl }]
trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 }
`;

const BAD: Array<[string, string, RegExp]> = [
  [
    "unknown plugin id",
    TINY.replace("type: kl", "type: klx"),
    /regularizers\[0\]\.type.*Unknown regularizer "klx"; known regularizers: .*kl/,
  ],
  [
    "wrong type",
    TINY.replace("iterations: 2", "iterations: two"),
    /trainer\.iterations: expected an integer/,
  ],
  [
    "missing required field",
    TINY.replace("iterations: 2, ", ""),
    /missing required field trainer\.iterations/,
  ],
  [
    "unknown key",
    TINY.replace("iterations: 2", "iteratons: 2, iterations: 2"),
    /unknown key "iteratons" in trainer/,
  ],
  ["unknown backend", TINY.replace("backend: wasm", "backend: gpu"), /backend: expected one of/],
  ["unknown model option", TINY.replace("base: 4", "bsae: 4"), /unknown key "bsae" in model/],
];

for (const [what, text, pattern] of BAD) {
  Deno.test(`run with a recipe with ${what} exits 2 with one message and writes no run directory`, async () => {
    await withDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/r.yaml`, text);
      const res = await cli(["run", `${dir}/r.yaml`, "--out", `${dir}/run`]);
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, pattern);
      assert.match(res.stderr, /r\.yaml/);
      assert.doesNotMatch(res.stderr, /\n\s+at /, "no stack trace");
      await assert.rejects(() => Deno.stat(`${dir}/run`));
    });
  });
}

Deno.test("run with a missing recipe file or an extends cycle exits 2", async () => {
  await withDir(async (dir) => {
    let res = await cli(["run", `${dir}/nope.yaml`]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /nope\.yaml.*not found/);
    await Deno.writeTextFile(`${dir}/a.yaml`, "extends: b.yaml\n" + TINY);
    await Deno.writeTextFile(`${dir}/b.yaml`, "extends: a.yaml\n");
    res = await cli(["validate", `${dir}/a.yaml`]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /extends cycle/);
  });
});

Deno.test("run --backend with an unknown backend exits 2 naming the known ones", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    const res = await cli(["run", `${dir}/r.yaml`, "--backend", "cuda", "--out", `${dir}/run`]);
    assert.equal(res.code, 2);
    assert.match(
      res.stderr,
      /Unknown backend "cuda"; known backends: auto, wasm, cpu, tensorflow, tensorflow-gpu/,
    );
  });
});

Deno.test("backend tensorflow(-gpu) without tfjs-node installed exits 2 with install instructions and leaves deno.lock alone", async () => {
  const lock = await Deno.readFile(`${ROOT}/deno.lock`);
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    for (const backend of ["tensorflow", "tensorflow-gpu"]) {
      // through deno task run (the launcher), as a user runs it
      const res = await new Deno.Command(Deno.execPath(), {
        args: ["task", "run", `${dir}/r.yaml`, "--backend", backend, "--out", `${dir}/${backend}`],
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(res.stderr);
      assert.equal(res.code, 2, stderr);
      assert.match(
        stderr,
        new RegExp(`Cannot use backend "${backend}".*not installed.*Install`, "s"),
      );
      assert.doesNotMatch(stderr, /Download/);
    }
  });
  assert.deepEqual(await Deno.readFile(`${ROOT}/deno.lock`), lock, "deno.lock changed");
});

Deno.test("the default path downloads no tfjs-node, tfjs union package or packages with build scripts", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${ROOT}/mod.ts`],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.ok(out.success);
  const packages = Object.keys(JSON.parse(new TextDecoder().decode(out.stdout)).npmPackages);
  const names = packages.map((p) => p.slice(0, p.indexOf("@", 1)));
  for (const unwanted of ["@tensorflow/tfjs", "@tensorflow/tfjs-node", "core-js"]) {
    assert.ok(!names.includes(unwanted), `${unwanted} is in the graph: ${names.join(", ")}`);
  }
  // and the lockfile (whose packages Deno installs all at once) holds nothing else
  const lock = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.lock`));
  assert.deepEqual(Object.keys(lock.npm).sort(), [...packages].sort());
});

Deno.test("validate accepts every recipe in recipes/", async () => {
  const files: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else if (e.name.endsWith(".yaml")) files.push(`${d}/${e.name}`);
    }
  };
  await walk(`${ROOT}/recipes`);
  const res = await cli(["validate", ...files]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout.trim().split("\n").length, files.length);
});

Deno.test("plugins lists every kind with ids and options", async () => {
  const res = await cli(["plugins", "--json"]);
  assert.equal(res.code, 0, res.stderr);
  const out = JSON.parse(res.stdout);
  assert.ok(out.regularizer.some((e: { id: string }) => e.id === "mi"));
  const unet = out.model.find((e: { id: string }) => e.id === "unet");
  assert.match(unet.options.base.type, /number = 16/);
});

Deno.test("plugins describes every option of every built-in plugin (text and --json)", async () => {
  const res = await cli(["plugins", "--json"]);
  assert.equal(res.code, 0, res.stderr);
  const out: Record<
    string,
    Array<{ id: string; options: Record<string, { type: string; description: string }> }>
  > = JSON.parse(res.stdout);
  const missing: string[] = [];
  let count = 0;
  for (const [kind, entries] of Object.entries(out)) {
    for (const e of entries) {
      for (const [key, option] of Object.entries(e.options)) {
        count++;
        if (typeof option.description !== "string" || option.description.trim() === "") {
          missing.push(`${kind} ${e.id}: ${key}`);
        }
      }
    }
  }
  assert.ok(count > 50, `only ${count} options listed`);
  assert.deepEqual(missing, [], `options without a description: ${missing.join(", ")}`);
  const text = await cli(["plugins"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /\n {6}radius: number = 1 {2}Window radius: 1 is the paper's 3x3/);
});

Deno.test("run trains, prints a Dice table and eval re-evaluates the checkpoint", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    const res = await cli([
      "run",
      `${dir}/r.yaml`,
      "--out",
      `${dir}/run`,
      "--set",
      "trainer.iterations=3",
      "--seed",
      "4",
    ]);
    assert.equal(res.code, 0, res.stderr);
    const row = String.raw`\s+\d+\.\d+\s+(\d+\.\d+|n/a)\n`;
    assert.match(res.stdout, new RegExp(`Dice \\(%\\)\\s+HD95 \\(mm\\)\n`));
    assert.match(res.stdout, new RegExp(`RV${row}Myo${row}LV${row}mean`));
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/run/summary.json`));
    // the final line gives the wall time first, then where it went
    const times = res.stdout.match(
      /: 3 iterations in (\d+\.\d) s \(training (\d+\.\d) s, validation (\d+\.\d) s, data (\d+\.\d) s/,
    );
    assert.ok(times, res.stdout);
    // Dice in percent everywhere, and no "student" on a run without a teacher
    assert.match(res.stdout, /data \d+\.\d s; best mean \d+\.\d\d % at iteration \d+\)/);
    assert.doesNotMatch(res.stdout, /student/);
    assert.match(
      res.stderr,
      /validation Dice RV \d+\.\d\d Myo \d+\.\d\d LV \d+\.\d\d %, mean \d+\.\d\d %/,
    );
    assert.equal(Number(times[1]), Number(summary.seconds_wall.toFixed(1)));
    assert.ok(Number(times[1]) >= Number(times[2]) + Number(times[3]) - 0.2, times[0]);
    assert.equal(summary.iterations, 3);
    assert.equal(summary.seed, 4);
    const recipe = await Deno.readTextFile(`${dir}/run/recipe.yaml`);
    assert.match(recipe, /iterations: 3/);
    const ev = await cli(["eval", `${dir}/run`, "--checkpoint", "latest", "--json"]);
    assert.equal(ev.code, 0, ev.stderr);
    const evaluation = JSON.parse(ev.stdout);
    assert.deepEqual(evaluation.dice, summary.dice);
  });
});

Deno.test("a run folder is never overwritten: --out on a run exits 2 naming --resume; --resume on a finished run says so", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    const run = `${dir}/run`;
    const first = await cli(["run", `${dir}/r.yaml`, "--out", run, "--quiet"]);
    assert.equal(first.code, 0, first.stderr);
    const files = ["summary.json", "metrics.jsonl", "latest.ckpt", "best.ckpt", "recipe.yaml"];
    const snapshot = async () =>
      await Promise.all(files.map(async (f) => [f, await Deno.readFile(`${run}/${f}`)]));
    const before = await snapshot();

    const again = await cli(["run", `${dir}/r.yaml`, "--out", run, "--set", "seed=9", "--quiet"]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /already holds a finished run.*never overwritten.*new folder/);
    assert.deepEqual(await snapshot(), before);

    const resumed = await cli(["run", "--resume", run, "--quiet"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(
      resumed.stdout,
      /is finished \(2 iterations, mean Dice [\d.]+ %\): nothing to resume/,
    );
    assert.doesNotMatch(resumed.stdout + resumed.stderr, /Dice \(%\)/); // no re-evaluation
    assert.deepEqual(await snapshot(), before);

    // an interrupted run (a checkpoint, no summary): --out points to --resume
    await Deno.remove(`${run}/summary.json`);
    const cut = await cli(["run", `${dir}/r.yaml`, "--out", run, "--quiet"]);
    assert.equal(cut.code, 2, cut.stderr);
    assert.match(cut.stderr, /already holds a run .*--resume .*run.*or give --out a new folder/);
  });
});

Deno.test("deno task from another folder: paths resolve there, eval --data names the dataset and where it looked", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    await Deno.mkdir(`${dir}/data`);
    const task = async (args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "--config", `${ROOT}/deno.json`, ...args],
        cwd: dir, // the user's folder, not the project's
        // a fresh environment: deno task keeps an INIT_CWD it inherits (from deno task test)
        clearEnv: true,
        env: Object.fromEntries(
          ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"].flatMap((k) => {
            const v = Deno.env.get(k);
            return v === undefined ? [] : [[k, v]];
          }).concat([["NO_COLOR", "1"]]),
        ),
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
    };
    const run = await task(["run", "r.yaml", "--out", "run", "--quiet"]);
    assert.equal(run.code, 0, run.stderr);
    await Deno.stat(`${dir}/run/summary.json`); // in the user's folder
    const missing = await task(["eval", "run", "--data", "nodata"]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, new RegExp(`"nodata" does not exist \\(looked for ${dir}/nodata`));
    // a folder cannot stand in for a generated dataset: say so, not "unknown key root"
    const folder = await task(["eval", "run", "--data", "data"]);
    assert.equal(folder.code, 2, folder.stderr);
    assert.match(folder.stderr, /dataset "phantom" reads no data folder.*recipe file/);
    assert.doesNotMatch(folder.stderr, /<recipe>|unknown key "root"/);
    // a bad option of the run's recipe names the run's recipe file
    const bad = await task(["eval", "run", "--set", "dataset.bogus=1"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /Cannot load recipe "run\/recipe\.yaml": unknown key "bogus"/);
    const norecipe = await task(["run", "nothere.yaml"]);
    assert.match(
      norecipe.stderr,
      new RegExp(`"nothere.yaml": file not found \\(looked for ${dir}/nothere.yaml\\)`),
    );
  });
});

Deno.test("deno task cache shows the dataset cache folder and --clear empties it", async () => {
  await withDir(async (dir) => {
    const entry = `${dir}/acdc-0123456789abcdef`;
    await Deno.mkdir(entry);
    await Deno.writeFile(`${entry}/patient001_frame01.bin`, new Uint8Array(1000));
    await Deno.writeTextFile(`${dir}/notes.txt`, "not the cache's"); // left alone
    const bundle = `${dir}/web/0123456789abcdef`; // a page bundle serve built
    await Deno.mkdir(bundle, { recursive: true });
    await Deno.writeTextFile(`${bundle}/app.js`, "//");
    await Deno.mkdir(`${dir}/web/mine`); // not a bundle: left alone
    const cache = async (args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "cache", ...args],
        cwd: ROOT,
        env: { NO_COLOR: "1", MISSL_CACHE_DIR: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
    };
    const shown = await cache([]);
    assert.equal(shown.code, 0);
    assert.match(shown.stdout, new RegExp(`dataset cache: ${dir} \\(3 files, 0\\.0 MB\\)`));
    const cleared = await cache(["--clear"]);
    assert.equal(cleared.code, 0);
    assert.match(cleared.stdout, /cleared the dataset cache .*: 1 dataset entries, 1 page bundles/);
    assert.equal(await Deno.stat(entry).then(() => true, () => false), false);
    assert.equal(await Deno.stat(bundle).then(() => true, () => false), false);
    await Deno.stat(`${dir}/web/mine`);
    await Deno.stat(`${dir}/notes.txt`);
  });
});

Deno.test("--help works for the program and every command", async () => {
  for (
    const args of [["--help"], ["run", "--help"], ["validate", "--help"], ["eval", "--help"], [
      "plugins",
      "--help",
    ]]
  ) {
    const res = await cli(args);
    assert.equal(res.code, 0, `${args}: ${res.stderr}`);
    assert.match(res.stdout, /Usage:/);
  }
});
