// The README's "Serving it": Deno imports .ts over HTTP only with a JavaScript / TypeScript
// content type; the README's Deno.serve lines send one, and a program imports mod.ts from them.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { cli, ROOT, withDir } from "./_helpers.ts";

/** The README's `Deno.serve` block, listening on `port`, `.ts` sent as `tsType` when given. */
async function serveScript(port: number, tsType?: string): Promise<string> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1])
    .find((b) => b.includes("Deno.serve("));
  assert.ok(block, "README.md has a Deno.serve block");
  assert.match(block, /port: 8000/);
  let script = block.replace("port: 8000", `port: ${port}`);
  if (tsType) script = script.replace(/ts: "[^"]*"/, `ts: "${tsType}"`);
  return script;
}

/** A port the tests have no permission to probe (no --allow-net): a random high one. */
function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

/** Start the README's server on a free port; `[server, port]`. */
async function startServer(
  dir: string,
  tsType?: string,
): Promise<[Deno.ChildProcess, number, ReadableStreamDefaultReader<string>]> {
  for (let attempt = 0;; attempt++) {
    const port = randomPort();
    const serve = join(dir, `serve-${port}.ts`);
    await Deno.writeTextFile(serve, await serveScript(port, tsType));
    // as the README runs it: from the checkout, reading it only
    const server = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", `--allow-net=127.0.0.1:${port}`, "--allow-read=.", serve],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    // Deno.serve says where it listens once it does
    const reader = server.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let said = "";
    while (!/Listening on/.test(said)) {
      const { value, done } = await reader.read();
      if (done) break;
      said += value;
    }
    if (/Listening on/.test(said)) return [server, port, reader];
    await reader.cancel();
    await server.status;
    if (attempt === 4 || !/AddrInUse|in use/i.test(said)) throw new Error(`no server: ${said}`);
  }
}

/** Serve the checkout as the README says, run `client` importing from it, stop the server. */
async function importThroughServer(dir: string, tsType?: string): Promise<Deno.CommandOutput> {
  const [server, port, stderr] = await startServer(dir, tsType);
  try {
    await Deno.writeTextFile(
      join(dir, `main-${port}.ts`),
      `import { parseRecipe, Trainer } from "http://127.0.0.1:${port}/mod.ts";
const recipe = parseRecipe({
  method: "x",
  backend: "wasm",
  dataset: { type: "phantom", patients: 4, slicesPerPatient: 2, size: 32,
             split: { labeled: 1, unlabeled: 1, validation: 2 } },
  model: { type: "unet", base: 2, depth: 2 },
  trainer: { iterations: 1, labeledBatch: 1, unlabeledBatch: 1 },
}, "<inline>");
const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
console.log(JSON.stringify(await trainer.step()));
trainer.dispose();
`,
    );
    return await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        `--allow-import=127.0.0.1:${port}`,
        "--allow-read",
        "--allow-env",
        "--allow-sys",
        `main-${port}.ts`,
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
  } finally {
    server.kill("SIGTERM");
    await stderr.cancel();
    await server.status;
  }
}

Deno.test("README's Deno.serve lines serve mod.ts so that a program imports it and trains a step", async () => {
  await withDir(async (dir) => {
    const out = await importThroughServer(dir);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const values = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    assert.ok(Number.isFinite(values.loss));
  });
});

Deno.test("a server that sends .ts as python's http.server does (text/vnd.trolltech.linguist) is refused", async () => {
  await withDir(async (dir) => {
    const out = await importThroughServer(dir, "text/vnd.trolltech.linguist");
    assert.notEqual(out.code, 0);
    assert.match(
      new TextDecoder().decode(out.stderr),
      /Expected a JavaScript or TypeScript module/,
    );
  });
});

Deno.test("mi-ssl installed from the served URL (the README's line with the URL) inits and validates a project, and serve builds its page without a checkout", async () => {
  await withDir(async (dir) => {
    const [server, port, stderr] = await startServer(dir);
    try {
      const host = `127.0.0.1:${port}`;
      const path = `${join(dir, "root", "bin")}:${dirname(Deno.execPath())}:${
        Deno.env.get("PATH") ?? ""
      }`;
      // the page's bundle goes to this cache (a fresh one: built from the URL)
      const cache = join(dir, "cache");
      const run = (command: string, args: string[], cwd: string) =>
        new Deno.Command(command, {
          args,
          cwd,
          env: { NO_COLOR: "1", PATH: path, MISSL_CACHE_DIR: cache },
          stdout: "piped",
          stderr: "piped",
        }).output();
      const readme = await Deno.readTextFile(join(ROOT, "README.md"));
      const line = readme.split("\n").find((l) => l.startsWith("deno install --global "))!;
      const args = line.split(/\s+/).slice(1).map((a) =>
        a === "app/mi_ssl.ts" ? `http://${host}/app/mi_ssl.ts` : a
      );
      const install = await run(
        Deno.execPath(),
        [...args, `--allow-import=${host}`, "--root", join(dir, "root")],
        dir,
      );
      assert.equal(install.code, 0, new TextDecoder().decode(install.stderr));
      const init = await run("mi-ssl", ["init", "p"], dir);
      assert.equal(init.code, 0, new TextDecoder().decode(init.stderr));
      // the template's plugin imports the framework from where the command came from
      assert.ok(
        (await Deno.readTextFile(join(dir, "p", "my_regularizer.ts")))
          .includes(`from "http://${host}/mod.ts"`),
      );
      const validate = await run("mi-ssl", ["validate", "recipe.yaml"], join(dir, "p"));
      assert.equal(validate.code, 0, new TextDecoder().decode(validate.stderr));
      assert.match(new TextDecoder().decode(validate.stdout), /ok recipe\.yaml/);

      // serve: a tiny run (trained from the checkout), its page written by the installed command;
      // the bundle is built from the URL's modules into the cache, the only place it may write
      await Deno.writeTextFile(
        join(dir, "r.yaml"),
        "method: tiny\nbackend: wasm\ndataset: { type: phantom, patients: 4, slicesPerPatient: 2, " +
          "size: 32, split: { labeled: 1, unlabeled: 1, validation: 2 } }\n" +
          "model: { type: unet, base: 2, depth: 2 }\n" +
          "trainer: { iterations: 1, labeledBatch: 1, unlabeledBatch: 1 }\n",
      );
      const trained = await cli(["run", join(dir, "r.yaml"), "--out", join(dir, "run"), "--quiet"]);
      assert.equal(trained.code, 0, trained.stderr);
      const served = await run("mi-ssl", ["serve", "../run", "--export", "page"], join(dir, "p"));
      const said = new TextDecoder().decode(served.stdout);
      assert.equal(served.code, 0, new TextDecoder().decode(served.stderr));
      assert.match(said, /building the page's bundle into .*cache\/web\//);
      const bundle = await Deno.readTextFile(join(dir, "p", "page", "app.js"));
      assert.match(bundle, /tfjs-backend-wasm-simd\.wasm/);
      assert.ok(
        (await Deno.stat(join(dir, "p", "page", "tfjs-backend-wasm-simd.wasm"))).size > 1e5,
      );
      const cached = [...Deno.readDirSync(join(cache, "web"))].map((e) => e.name);
      assert.equal(cached.length, 1, cached.join(", "));
    } finally {
      server.kill("SIGTERM");
      await stderr.cancel();
      await server.status;
    }
  });
});
