/**
 * The least-privilege launcher behind `deno task run` (app/launcher.ts): the permissions it
 * works out from a recipe, and a hostile plugin run through it.
 */
import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { UserError } from "../core/errors.ts";
import { gitCommit } from "../core/provenance.ts";
import {
  BASE_ENV,
  childEnvironment,
  describeGrants,
  grantFlags,
  type LaunchEnvironment,
  moduleGraph,
  npmCacheDir,
  parseEvalArgs,
  parseGrants,
  parseLaunchArgs,
  PERMISSIONS_ENV,
  planEval,
  planFlags,
  planLaunch,
  withoutGrants,
} from "../app/launcher.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const LAUNCHER = join(ROOT, "app", "launcher.ts");

/** `deno task run <args>`, i.e. the launcher with the task's own permissions. */
function taskRun(args: string[], env: Record<string, string> = {}): Promise<Deno.CommandOutput> {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "--allow-run=deno", LAUNCHER, "run", ...args],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

function environment(vars: Record<string, string> = {}): LaunchEnvironment {
  return {
    cwd: ROOT,
    frameworkDir: ROOT,
    npmCache: "/cache/deno/npm",
    tmpDir: "/tmpx",
    env: (name) => ({ HOME: "/home/u", ...vars })[name],
    moduleGraph: () => Promise.resolve(undefined),
  };
}

/** `deno task <args>` in the repository, as a user types it. */
function denoTask(args: string[], cwd = ROOT): Promise<Deno.CommandOutput> {
  return new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
}

const toFileUrl = (path: string) => pathToFileURL(path).href;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("launcher: --grant values merge by kind; unknown kinds and empty values are errors", () => {
  assert.deepEqual(parseGrants(["read=/a,/b", "read=/c", "net", "env=FOO"]), {
    read: ["/a", "/b", "/c"],
    net: true,
    env: ["FOO"],
  });
  assert.throws(() => parseGrants(["everything=/"]), UserError);
  assert.throws(() => parseGrants(["read="]), UserError);
});

Deno.test("launcher: flags are --no-prompt plus one --allow-<kind> per granted kind", () => {
  assert.deepEqual(grantFlags({ read: ["/a", "/b"], write: [], env: ["X"], net: true }), [
    "--no-prompt",
    "--no-remote", // no remote plugin: not even Deno's default import hosts
    "--allow-read=/a,/b",
    "--allow-env=X",
    "--allow-net",
  ]);
  assert.deepEqual(grantFlags({ import: ["example.org:443"] }), [
    "--no-prompt",
    "--allow-import=example.org:443",
  ]);
  // Deno's flag syntax splits on commas: such a path is refused, not silently split
  assert.throws(() => grantFlags({ read: ["/data/a,b"] }), UserError);
});

Deno.test("launcher: --grant is removed from the child's arguments, the rest kept in order", () => {
  assert.deepEqual(
    withoutGrants(["r.yaml", "--grant", "read=/x", "--set", "a=1", "--grant=net", "--quiet"]),
    ["r.yaml", "--set", "a=1", "--quiet"],
  );
  const parsed = parseLaunchArgs(["a.yaml", "b.yaml", "--seeds", "1-2", "--grant", "net"]);
  assert.deepEqual(parsed.recipes, ["a.yaml", "b.yaml"]);
  assert.equal(parsed.seeds, "1-2");
  assert.deepEqual(parsed.grant, ["net"]);
  assert.throws(() => parseLaunchArgs(["a.yaml", "--no-such-option"]), UserError);
});

Deno.test("launcher: an ACDC recipe gets its files, data, cache, run folder and named variables only", async () => {
  const args = parseLaunchArgs(["recipes/acdc-cpu/ours-kl.yaml", "--out", "runs-x"]);
  const { grants, notes } = await planLaunch(args, environment({ ACDC_ROOT: "/data/acdc" }));
  assert.deepEqual(notes, []);
  const read = grants.read as string[];
  for (
    const f of ["acdc-cpu/ours-kl.yaml", "acdc/ours-kl.yaml", "acdc/base.yaml"]
  ) assert.ok(read.includes(join(ROOT, "recipes", f)), `reads ${f}`);
  assert.ok(read.includes("/data/acdc"), "reads the data root the variable names");
  assert.ok(read.includes("/cache/deno/npm"), "reads the npm cache");
  assert.ok(!read.includes(ROOT), "not the whole project");
  // the per-user dataset cache, never the data folder
  assert.deepEqual(grants.write, ["/home/u/.cache/mi-ssl", join(ROOT, "runs-x")]);
  assert.deepEqual(
    [...(grants.env as string[])].sort(),
    ["ACDC_ROOT", "MISSL_BACKEND", ...BASE_ENV].sort(),
  );
  for (const kind of ["net", "run", "sys", "ffi", "import"] as const) {
    assert.equal(grants[kind], undefined, `no ${kind}`);
  }
});

Deno.test("launcher: the dataset cache folder is $MISSL_CACHE_DIR, else $XDG_CACHE_HOME/mi-ssl, else ~/.cache/mi-ssl", async () => {
  const args = parseLaunchArgs(["recipes/acdc-cpu/partial.yaml", "--set", "dataset.root=/d"]);
  for (
    const [vars, cache] of [
      [{ MISSL_CACHE_DIR: "/fast/c", XDG_CACHE_HOME: "/x" }, "/fast/c"],
      [{ XDG_CACHE_HOME: "/x" }, "/x/mi-ssl"],
      [{}, "/home/u/.cache/mi-ssl"],
    ] as const
  ) {
    const { grants } = await planLaunch(args, environment(vars));
    assert.deepEqual(grants.write, [cache, join(ROOT, "runs")], JSON.stringify(vars));
    assert.ok((grants.read as string[]).includes(cache));
    assert.ok(!(grants.write as string[]).some((w) => w.startsWith("/d")), "never the data");
    assert.ok((grants.env as string[]).includes("MISSL_CACHE_DIR"));
  }
});

Deno.test("launcher: cache: false writes only the run folder; --jobs 2 may run deno", async () => {
  const args = parseLaunchArgs([
    "recipes/acdc-cpu/partial.yaml",
    "recipes/acdc-cpu/full.yaml",
    "--set",
    "dataset.cache=false",
    "--set",
    "dataset.root=/data/acdc",
    "--jobs",
    "2",
  ]);
  const { grants } = await planLaunch(args, environment());
  assert.deepEqual(grants.write, [join(ROOT, "runs")]);
  assert.deepEqual(grants.run, ["deno"]);
  assert.ok((grants.env as string[]).includes(PERMISSIONS_ENV));
});

Deno.test("launcher: plugins: a local file is readable, a remote one's host importable", async () => {
  const args = parseLaunchArgs([
    "recipes/ours-kl.yaml",
    "--set",
    "plugins=[../examples/smoothness.ts, https://example.org:8443/x/plugin.ts, npm:some-plugin@1]",
  ]);
  const { grants } = await planLaunch(args, environment());
  assert.ok((grants.read as string[]).includes(join(ROOT, "examples", "smoothness.ts")));
  assert.deepEqual(grants.import, ["example.org:8443"]);
  // the phantom is generated: no data folder, no cache
  assert.deepEqual(grants.write, [join(ROOT, "runs")]);
});

Deno.test("launcher: a plugin's static import graph is granted, file by file and host by host, and nothing else", async () => {
  const graph = [
    "file:///repo/examples/smoothness.ts",
    "file:///repo/mod.ts",
    "file:///repo/core/a%20b.ts",
    "https://cdn.example.com/lib/x.ts",
    "npm:/zod@3.25.76",
    "node:path",
  ];
  const asked: string[] = [];
  const args = parseLaunchArgs([
    "recipes/ours-kl.yaml",
    "--set",
    "plugins=[/repo/examples/smoothness.ts]",
  ]);
  const plan = await planLaunch(args, {
    ...environment(),
    moduleGraph: (specifier) => {
      asked.push(specifier);
      return Promise.resolve(graph);
    },
  });
  assert.deepEqual(asked, ["/repo/examples/smoothness.ts"]);
  const read = plan.grants.read as string[];
  for (const f of ["/repo/examples/smoothness.ts", "/repo/mod.ts", "/repo/core/a b.ts"]) {
    assert.ok(read.includes(f), f);
  }
  assert.ok(!read.includes("/repo") && !read.includes("/repo/core"), "files, not folders");
  assert.deepEqual(plan.grants.import, ["cdn.example.com"]);
  assert.equal(plan.grants.net, undefined);
  assert.deepEqual([...plan.graphFiles!].sort(), ["/repo/core/a b.ts", "/repo/mod.ts"]);
  // the log counts them instead of listing them
  const line = describeGrants(plan.grants, "run", plan.graphFiles);
  assert.match(line, /and the 2 local modules the plugins import/);
  assert.doesNotMatch(line, /a b\.ts/);
});

Deno.test("launcher: deno info gives the example plugin's graph, mod.ts and the framework's modules in it", async () => {
  const graph = await moduleGraph(join(ROOT, "examples", "smoothness.ts"));
  assert.ok(graph, "deno info failed");
  const files = graph.filter((s) => s.startsWith("file:")).map((s) => fileURLToPath(s));
  assert.ok(files.includes(join(ROOT, "mod.ts")));
  assert.ok(files.includes(join(ROOT, "deps.ts")));
  // a missing plugin: just itself (the run reports it missing, not a permission)
  const missing = join(ROOT, "examples", "no-such-plugin.ts");
  assert.deepEqual(await moduleGraph(missing), [toFileUrl(missing)]);
});

Deno.test({
  name:
    "launcher: deno task run trains the README's plugin example, and a plugin outside the repository that imports mod.ts by URL",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const tiny = [
        "--set",
        "trainer.iterations=1",
        "--set",
        "dataset.size=32",
        "--set",
        "dataset.slicesPerPatient=2",
        "--quiet",
      ];
      const example = await denoTask([
        "run",
        "examples/smoothness.yaml",
        ...tiny,
        "--out",
        join(dir, "example"),
      ]);
      assert.equal(example.code, 0, text(example.stderr));
      const summary = JSON.parse(await Deno.readTextFile(join(dir, "example", "summary.json")));
      assert.equal(summary.method, "ours-kl+smoothness");
      // the code it was made with: the launcher hands the run the checkout's commit
      assert.deepEqual(summary.environment, {
        deno: Deno.version.deno,
        tfjs: "4.22.0",
        commit: await gitCommit(ROOT),
      });

      // a plugin of one's own, in a folder of one's own
      const mine = join(dir, "mine");
      await Deno.mkdir(mine);
      await Deno.writeTextFile(
        join(mine, "tv.ts"),
        `import { regularizers, tf, z } from ${JSON.stringify(toFileUrl(join(ROOT, "mod.ts")))};
regularizers.register({
  id: "outside-tv",
  description: "total variation, from outside the repository",
  options: z.object({}).strict(),
  create: () => ({
    id: "outside-tv",
    needsUnlabeled: true,
    loss: (ctx) => tf.tidy(() => tf.mean(tf.abs(tf.sub(
      tf.slice(ctx.probsUnlabeled, [0, 1, 0, 0], [-1, -1, -1, -1]),
      tf.slice(ctx.probsUnlabeled, [0, 0, 0, 0], [-1, ctx.probsUnlabeled.shape[1] - 1, -1, -1]),
    ))) as tf.Scalar),
  }),
});
`,
      );
      await Deno.writeTextFile(
        join(mine, "r.yaml"),
        `extends: ${join(ROOT, "recipes", "ours-kl.yaml")}
method: outside
plugins: [./tv.ts]
regularizers: [{ type: outside-tv }]
`,
      );
      const outside = await denoTask([
        "run",
        join(mine, "r.yaml"),
        ...tiny,
        "--out",
        join(dir, "o"),
      ]);
      assert.equal(outside.code, 0, text(outside.stderr));
      assert.match(text(outside.stderr), /local modules the plugins import/);
      await Deno.stat(join(dir, "o", "summary.json"));

      // a module outside the static graph (a computed import) is not granted; the message
      // says how to grant it
      await Deno.writeTextFile(join(mine, "other.ts"), "export const x = 1;\n");
      await Deno.writeTextFile(
        join(mine, "tv.ts"),
        "await import(['./', 'other.ts'].join(''));\n" +
          await Deno.readTextFile(join(mine, "tv.ts")),
      );
      const refused = await denoTask([
        "run",
        join(mine, "r.yaml"),
        ...tiny,
        "--out",
        join(dir, "r"),
      ]);
      assert.equal(refused.code, 2, text(refused.stderr));
      assert.match(text(refused.stderr), /Requires read access.*other\.ts.*\n.*--grant read=/s);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("launcher: --grant is in the help of deno task run and deno task eval", async () => {
  for (const command of ["run", "eval"]) {
    const help = await denoTask([command, "--help"]);
    assert.equal(help.code, 0, text(help.stderr));
    assert.match(text(help.stdout), /--grant <kind=values>/, command);
  }
});

Deno.test("launcher: a dataset from a plugin module gets a note asking for --grant", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const plugin = join(dir, "my_data.ts");
    await Deno.writeTextFile(
      plugin,
      `export const id = "my-data"; // datasets.register({ id, ... })\n`,
    );
    const args = parseLaunchArgs([
      "recipes/ours-kl.yaml",
      "--set",
      "dataset={type: my-data, root: /elsewhere}",
      "--set",
      `plugins=[${plugin}]`,
      "--grant",
      "read=/elsewhere",
    ]);
    const { grants, notes } = await planLaunch(args, environment());
    assert.equal(notes.length, 1);
    assert.match(notes[0], /my-data.*--grant read=/);
    assert.ok((grants.read as string[]).includes("/elsewhere"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: an unknown dataset type no plugin names gets no --grant note (the run names the type)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const plugin = join(dir, "other.ts");
    await Deno.writeTextFile(plugin, `export const id = "something-else";\n`);
    for (const plugins of [[], [plugin]]) {
      const args = parseLaunchArgs([
        "recipes/ours-kl.yaml",
        "--set",
        "dataset={type: my-data}",
        "--set",
        `plugins=[${plugins.join(",")}]`,
      ]);
      assert.deepEqual((await planLaunch(args, environment())).notes, [], `${plugins}`);
    }
    // through deno task run: the error alone, no note before it
    await Deno.writeTextFile(
      join(dir, "r.yaml"),
      "method: x\ndataset: { type: bogus }\ntrainer: { iterations: 2 }\n",
    );
    const out = await denoTask(["run", join(dir, "r.yaml"), "--out", join(dir, "run")]);
    assert.equal(out.code, 2);
    assert.match(text(out.stderr), /Unknown dataset "bogus"/);
    assert.doesNotMatch(text(out.stderr), /note:|--grant/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: --resume reads and writes the run directory and the recorded recipe", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(dir, "recipe.yaml"),
      "method: partial\ndataset: { type: acdc, root: data }\ntrainer: { iterations: 2 }\n",
    );
    await Deno.writeTextFile(
      join(dir, "run.json"),
      JSON.stringify({ baseDir: "/recipes", recipe: "/recipes/a.yaml" }),
    );
    const { grants } = await planLaunch(parseLaunchArgs(["--resume", dir]), environment());
    const read = grants.read as string[];
    assert.ok(read.includes(dir) && read.includes("/recipes/a.yaml"));
    assert.ok(read.includes("/recipes/data"), "the data root is resolved against baseDir");
    assert.deepEqual(grants.write, [dir, "/home/u/.cache/mi-ssl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: eval reads the run and the --data recipe's dataset, writes only --export", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(dir, "recipe.yaml"),
      "method: partial\ndataset: { type: phantom }\ntrainer: { iterations: 2 }\n",
    );
    const args = parseEvalArgs([
      dir,
      "--data",
      "recipes/acdc-cpu/partial.yaml",
      "--export",
      "preds",
      "--checkpoint",
      "latest",
    ]);
    const { grants } = await planEval(args, environment({ ACDC_ROOT: "/data/acdc" }));
    const read = grants.read as string[];
    assert.ok(read.includes(dir));
    assert.ok(read.includes(join(ROOT, "recipes", "acdc", "base.yaml")));
    assert.ok(read.includes("/data/acdc"), "the --data recipe's dataset replaces the run's");
    assert.deepEqual(grants.write, ["/home/u/.cache/mi-ssl", join(ROOT, "preds")]);
    // without --export nothing but the dataset cache is writable
    const plain = await planEval(parseEvalArgs([dir]), environment());
    assert.deepEqual(plain.grants.write ?? [], []);
    // --write rewrites the run's summary.json (atomically, beside it): the run folder
    const write = await planEval(
      parseEvalArgs([dir, "--grid", "source", "--write"]),
      environment(),
    );
    assert.deepEqual(write.grants.write, [dir]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: eval --checkpoint-from reads the other run and its dataset folder, writes only the run's summary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recipe = "method: partial\ndataset: { type: folder, root: data, size: 16, " +
      "classes: 2, cache: false, split: { labeled: 1, unlabeled: 1, validation: 2 } }\n" +
      "trainer: { iterations: 2 }\n";
    const kept = join(dir, "results", "partial", "seed1"), retrain = join(dir, "retrain");
    for (const d of [kept, retrain]) {
      await Deno.mkdir(d, { recursive: true });
      await Deno.writeTextFile(join(d, "recipe.yaml"), recipe);
    }
    await Deno.writeTextFile(
      join(retrain, "run.json"),
      JSON.stringify({ baseDir: join(dir, "recipes"), recipe: null }),
    );
    const { grants } = await planEval(
      parseEvalArgs([kept, "--grid", "source", "--write", "--checkpoint-from", retrain]),
      environment(),
    );
    const read = grants.read as string[];
    assert.ok(read.includes(kept) && read.includes(retrain), read.join(", "));
    assert.ok(read.includes(join(dir, "recipes", "data")), "the retrain's dataset folder");
    assert.ok(!read.includes(join(kept, "data")), "not one beside the kept run");
    assert.deepEqual(grants.write, [kept]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: backend webgpu and auto get --unstable-webgpu and no other permission; wasm and cpu do not", async () => {
  const plan = (backend?: string) =>
    planLaunch(
      parseLaunchArgs(["recipes/ours-kl.yaml", ...(backend ? ["--backend", backend] : [])]),
      environment(),
    );
  const wasm = await plan("wasm");
  assert.equal(wasm.webgpu, false);
  assert.ok(!planFlags(wasm).includes("--unstable-webgpu"));
  assert.ok(!planFlags(await plan("cpu")).includes("--unstable-webgpu"));
  for (const backend of ["webgpu", "auto", undefined]) {
    const p = await plan(backend);
    assert.equal(p.webgpu, true, `${backend}`);
    const flags = planFlags(p);
    assert.equal(flags.filter((f) => f === "--unstable-webgpu").length, 1);
    // the same permission flags as a wasm run: WebGPU needs only the flag (without --backend
    // the recipe also reads MISSL_BACKEND)
    if (backend !== undefined) {
      assert.deepEqual(flags.filter((f) => f !== "--unstable-webgpu"), planFlags(wasm));
    }
    for (const kind of ["net", "ffi", "sys", "run"] as const) {
      assert.equal(p.grants[kind], undefined, `${backend}: no ${kind}`);
    }
    assert.match(
      describeGrants(p.grants, "run", p.graphFiles, p.webgpu),
      /webgpu: yes \(--unstable-webgpu/,
    );
  }
  // (not /webgpu/: the checkout's own path may contain it, as /work/wt-webgpu does)
  assert.doesNotMatch(
    describeGrants(wasm.grants, "run", wasm.graphFiles, wasm.webgpu),
    /webgpu:|--unstable-webgpu/,
  );
  // eval plans from the run's recipe likewise
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(dir, "recipe.yaml"),
      "method: partial\nbackend: webgpu\ndataset: { type: phantom }\ntrainer: { iterations: 2 }\n",
    );
    const ev = await planEval(parseEvalArgs([dir]), environment());
    assert.equal(ev.webgpu, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: backend tensorflow is granted ffi, env and sys (a native addon)", async () => {
  const args = parseLaunchArgs(["recipes/ours-kl.yaml", "--backend", "tensorflow"]);
  const { grants, notes } = await planLaunch(args, environment());
  assert.equal(grants.ffi, true);
  assert.equal(grants.env, true);
  assert.equal(grants.sys, true);
  assert.match(notes.join("\n"), /native addon/);
});

Deno.test({
  name:
    "launcher: a hostile plugin run through deno task run cannot read, write, reach the net or read the environment beyond its grants",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const secret = join(dir, "secret.txt");
      await Deno.writeTextFile(secret, "s3cr3t");
      const plugin = join(dir, "hostile.ts");
      await Deno.writeTextFile(
        plugin,
        `const report: Record<string, string> = {};
const attempt = async (name: string, f: () => unknown) => {
  try { await f(); report[name] = "allowed"; } catch (e) { report[name] = (e as Error).name; }
};
await attempt("read", () => Deno.readTextFileSync(${JSON.stringify(secret)}));
await attempt("write", () => Deno.writeTextFileSync(${JSON.stringify(join(dir, "x.txt"))}, "x"));
await attempt("env", () => Deno.env.get("HOSTILE_SECRET"));
await attempt("net", () => Deno.connect({ hostname: "127.0.0.1", port: 9 }));
await attempt("run", () => new Deno.Command("true").outputSync());
await attempt("sys", () => Deno.hostname());
try {
  await import(["https://deno.land/std@0.200.0/", "path/mod.ts"].join(""));
  report.import = "allowed";
} catch (e) {
  // refused before any request, or (had it been allowed) a network error
  report.import = /--no-remote|import access/.test(String(e)) ? "refused" : "attempted";
}
console.error("HOSTILE " + JSON.stringify(report));
`,
      );
      const out = join(dir, "run");
      const command = (extra: string[]) =>
        taskRun([
          "recipes/ours-kl.yaml",
          "--set",
          `plugins=[${plugin}]`,
          "--set",
          "trainer.iterations=1",
          "--out",
          out,
          "--quiet",
          ...extra,
        ], { HOSTILE_SECRET: "yes" });
      const report = (stderr: Uint8Array) => {
        const line = new TextDecoder().decode(stderr).split("\n").find((l) =>
          l.startsWith("HOSTILE ")
        );
        assert.ok(line, new TextDecoder().decode(stderr));
        return JSON.parse(line.slice(8)) as Record<string, string>;
      };
      const first = await command([]);
      assert.equal(first.code, 0, new TextDecoder().decode(first.stderr));
      assert.deepEqual(report(first.stderr), {
        read: "NotCapable",
        write: "NotCapable",
        env: "NotCapable",
        net: "NotCapable",
        run: "NotCapable",
        sys: "NotCapable",
        import: "refused",
      });
      // the run itself wrote its folder
      await Deno.stat(join(out, "summary.json"));
      // what the user grants on the command line, and only that, is added
      await Deno.remove(out, { recursive: true });
      const second = await command(["--grant", `read=${secret}`, "--grant", "env=HOSTILE_SECRET"]);
      assert.equal(second.code, 0, new TextDecoder().decode(second.stderr));
      const r = report(second.stderr);
      assert.equal(r.read, "allowed");
      assert.equal(r.env, "allowed");
      assert.equal(r.write, "NotCapable");
      assert.equal(r.net, "NotCapable");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "launcher: --jobs 2 children get the same narrowed permissions and finish",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const result = await taskRun([
        "recipes/partial.yaml",
        "--seeds",
        "1,2",
        "--jobs",
        "2",
        "--set",
        "trainer.iterations=1",
        "--out",
        dir,
        "--quiet",
      ]);
      const text = new TextDecoder().decode(result.stderr);
      assert.equal(result.code, 0, text);
      for (const seed of [1, 2]) {
        await Deno.stat(join(dir, "partial", `seed${seed}`, "summary.json"));
        const log = await Deno.readTextFile(join(dir, "partial", `seed${seed}`, "run.log"));
        assert.doesNotMatch(log, /not granted|NotCapable/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "launcher: a permission the run lacks ends in a clean message naming it, exit 2",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // the run folder may be written but not read back: the checkpoint's rename needs read
      const result = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-read=${join(ROOT, "recipes")},${await npmCacheDir()}`,
          "--allow-env=MISSL_BACKEND,LOG_TOKENS,LOG_STREAM",
          `--allow-write=${dir}`,
          join(ROOT, "app", "cli.ts"),
          "run",
          "recipes/partial.yaml",
          "--set",
          "trainer.iterations=1",
          "--out",
          join(dir, "run"),
          "--quiet",
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(result.stderr);
      assert.equal(result.code, 2, text);
      assert.match(text, /not granted a permission it needs: Requires read access/);
      assert.match(text, /--grant/);
      assert.doesNotMatch(text, /^\s+at /m, "no stack trace");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("launcher: a run that may use WebGPU gets XDG_RUNTIME_DIR when it is unset (Mesa prints an error without it), and only then", async () => {
  const plan = (backend: string) =>
    planLaunch(parseLaunchArgs(["recipes/ours-kl.yaml", "--backend", backend]), environment());
  const unset = () => undefined;
  const set = (name: string) => name === "XDG_RUNTIME_DIR" ? "/run/user/0" : undefined;
  const auto = await plan("auto");
  assert.equal(childEnvironment(auto, planFlags(auto), unset, "/tmp/x").XDG_RUNTIME_DIR, "/tmp/x");
  assert.equal(childEnvironment(auto, planFlags(auto), set, "/tmp/x").XDG_RUNTIME_DIR, undefined);
  const wasm = await plan("wasm");
  assert.equal(childEnvironment(wasm, planFlags(wasm), unset, "/tmp/x").XDG_RUNTIME_DIR, undefined);
});

Deno.test("launcher: a default (auto) run prints no XDG_RUNTIME_DIR error where Mesa's Vulkan is installed", async () => {
  const env = { ...Object.fromEntries(Object.entries(Deno.env.toObject())) };
  delete env.XDG_RUNTIME_DIR;
  const out = await new Deno.Command("deno", {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-run=deno",
      LAUNCHER,
      "run",
      "recipes/ours-kl.yaml",
      "--set",
      "trainer.iterations=1",
      "--set",
      "trainer.validateEvery=1",
      "--out",
      await Deno.makeTempDir().then((d) => join(d, "run")),
      "--quiet",
    ],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text);
  assert.ok(!/XDG_RUNTIME_DIR is invalid/.test(text), text);
});
