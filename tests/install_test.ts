// The installed command, as a new user meets it: in an empty folder outside the repository,
// install `mi-ssl` with the README's line, `init` a project, put a few NIfTI scans in it, train a
// few iterations with the project's own plugin, evaluate, predict.
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { writeVolume } from "../io/volume.ts";
import { COMMAND_LAUNCH } from "../app/commands.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The README's install line, with `--root` so that the test installs into its own folder. */
async function installLine(): Promise<string[]> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const line = readme.split("\n").find((l) => l.startsWith("deno install --global "));
  assert.ok(line, "README.md has a `deno install --global ...` line");
  return line.split(/\s+/).slice(1);
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `command args` in `cwd` with a fresh environment (no INIT_CWD from deno task test). */
async function sh(command: string, args: string[], cwd: string, path: string): Promise<Result> {
  const env: Record<string, string> = { NO_COLOR: "1", PATH: path };
  for (
    const k of [
      "HOME",
      "DENO_DIR",
      "XDG_CACHE_HOME",
      "TMPDIR",
      "XDG_RUNTIME_DIR",
      "MISSL_CACHE_DIR",
    ]
  ) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  const out = await new Deno.Command(command, {
    args,
    cwd,
    clearEnv: true,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** Labels `[d0, d1, d2]`: 1 inside an ellipsoid, 0 outside. */
function ellipsoid([d0, d1, d2]: [number, number, number], shift: number): Uint8Array {
  const out = new Uint8Array(d0 * d1 * d2);
  for (let i = 0; i < d0; i++) {
    for (let j = 0; j < d1; j++) {
      for (let k = 0; k < d2; k++) {
        const r = ((i - d0 / 2) / (d0 / 3)) ** 2 + ((j - d1 / 2 - shift) / (d1 / 3)) ** 2 +
          ((k - d2 / 2) / (d2 / 3)) ** 2;
        out[(i * d1 + j) * d2 + k] = r < 1 ? 1 : 0;
      }
    }
  }
  return out;
}

Deno.test("mi-ssl: installed with the README's line, init, train with the project's plugin, eval, predict and serve, from a folder outside the repository", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mi-ssl-user-" });
  try {
    assert.ok(relative(ROOT, dir).startsWith(".."), `${dir} is outside the repository`);
    const path = `${join(dir, "root", "bin")}:${dirname(Deno.execPath())}:${
      Deno.env.get("PATH") ?? ""
    }`;
    // the README's line, from a checkout (app/mi_ssl.ts is relative to the repository)
    const install = await sh(
      Deno.execPath(),
      [...await installLine(), "--root", join(dir, "root")],
      ROOT,
      path,
    );
    assert.equal(install.code, 0, install.stderr);
    const mi = (args: string[], cwd: string) => sh("mi-ssl", args, cwd, path);

    const init = await mi(["init", "project"], dir);
    assert.equal(init.code, 0, init.stderr);
    const project = join(dir, "project");
    for (const f of ["recipe.yaml", "my_regularizer.ts", "README.md"]) {
      await Deno.stat(join(project, f));
    }
    // init writes only into its folder, and never over a project
    const again = await mi(["init", "project"], dir);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /holds recipe\.yaml, my_regularizer\.ts, README\.md already/);

    const shape: [number, number, number] = [10, 16, 6];
    for (const [n, id] of ["a", "b", "c"].entries()) {
      const label = ellipsoid(shape, n - 1);
      const common = { shape, spacing: [1, 1, 2.5] };
      await writeVolume(join(project, "data", "images", `${id}.nii.gz`), {
        data: Float32Array.from(label, (v, i) => 100 * v + (i % 5)),
        ...common,
      });
      await writeVolume(join(project, "data", "labels", `${id}.nii.gz`), {
        data: label,
        ...common,
      });
    }

    const validate = await mi(["validate", "recipe.yaml"], project);
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, /ok recipe\.yaml/);
    const small = [
      "trainer.iterations=2",
      "trainer.labeledBatch=2",
      "trainer.unlabeledBatch=2",
      "dataset.size=16",
      "dataset.cache=false",
      "model.base=2",
      "model.depth=2",
      "backend=wasm",
    ].flatMap((s) => ["--set", s]);
    const run = await mi(
      ["run", "recipe.yaml", "--out", "runs/first", "--quiet", ...small],
      project,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /run directory: runs\/first/);
    // the project's own regularizer took part in every step
    const metrics = (await Deno.readTextFile(join(project, "runs", "first", "metrics.jsonl")))
      .trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.loss !== undefined);
    assert.equal(metrics.length, 2);
    for (const m of metrics) assert.ok(Number.isFinite(m["my-smoothness"]), JSON.stringify(m));

    const evaluated = await mi(["eval", "runs/first", "--json"], project);
    assert.equal(evaluated.code, 0, evaluated.stderr);
    const json = evaluated.stdout.slice(evaluated.stdout.indexOf("{"));
    assert.ok(Number.isFinite(JSON.parse(json).dice_mean), evaluated.stdout);

    const predicted = await mi(["predict", "runs/first", "data/images", "--out", "pred"], project);
    assert.equal(predicted.code, 0, predicted.stderr);
    for (const id of ["a", "b", "c"]) await Deno.stat(join(project, "pred", `${id}_pred.nii.gz`));
    // the shape as the NIfTI header lists it (x y z; the arrays were written z, y, x)
    assert.match(predicted.stdout, /a\.nii\.gz -> pred\/a_pred\.nii\.gz \(6 x 16 x 10;/);

    // serve: the page's bundle is built on first use into the (test's) cache, then served
    const server = new Deno.Command("mi-ssl", {
      args: ["serve", "runs/first", "--port", "0"],
      cwd: project,
      clearEnv: true,
      env: {
        NO_COLOR: "1",
        PATH: path,
        HOME: Deno.env.get("HOME") ?? dir,
        MISSL_CACHE_DIR: join(dir, "cache"),
      },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let url: string | undefined;
    try {
      const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let said = "";
      while (url === undefined) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`serve ended: ${said}`);
        said += value;
        url = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(said)?.[1];
      }
      reader.releaseLock();
      assert.match(said, /building the page's bundle into .*cache\/web\/[0-9a-f]{16} /);
      for (
        const [name, type] of [
          ["", "text/html"],
          ["app.js", "text/javascript"],
          ["tfjs-backend-wasm-simd.wasm", "application/wasm"],
          ["model.json", "application/json"],
        ]
      ) {
        const r: Response = await fetch(new URL(name, url));
        assert.equal(r.status, 200, name);
        assert.match(r.headers.get("content-type") ?? "", new RegExp(type), name);
        assert.ok((await r.arrayBuffer()).byteLength > 0, name);
      }
      const other = await fetch(new URL("recipe.yaml", url));
      assert.equal(other.status, 404);
      await other.body?.cancel();
    } finally {
      server.kill("SIGTERM");
      await server.stdout.cancel().catch(() => {});
      await server.status;
    }
    // mi-ssl passed the SIGTERM on: its `deno run ... serve` child is gone too
    const served = url;
    if (served !== undefined) await assert.rejects(() => fetch(served));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every mi-ssl subcommand starts as its deno task does (deno.json)", async () => {
  const tasks: Record<string, string> = JSON.parse(
    await Deno.readTextFile(join(ROOT, "deno.json")),
  ).tasks;
  for (const [name, { script, flags }] of Object.entries(COMMAND_LAUNCH)) {
    assert.equal(
      tasks[name],
      ["deno run", ...flags, `app/${script}.ts`, name].join(" "),
      `deno task ${name}`,
    );
  }
});

Deno.test("deno task from another folder: validate and table resolve paths where typed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(dir, "r.yaml"),
      "method: tiny\ndataset: { type: phantom }\ntrainer: { iterations: 2 }\n",
    );
    const task = (args: string[]) =>
      sh(
        Deno.execPath(),
        ["task", "--config", join(ROOT, "deno.json"), ...args],
        dir,
        `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`,
      );
    const validate = await task(["validate", "r.yaml"]);
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, /ok r\.yaml/);
    // a run folder beside the user, not in the repository
    await Deno.mkdir(join(dir, "mine"));
    for (const f of ["recipe.yaml", "summary.json", "metrics.jsonl.gz"]) {
      await Deno.copyFile(
        join(ROOT, "results", "phantom", "consistency", "seed1", f),
        join(dir, "mine", f),
      );
    }
    const table = await task(["table", "mine"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /consistency/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
