import assert from "node:assert/strict";
import { join } from "node:path";
import { answer, type PageFiles, pageFiles } from "../app/serve.ts";
import { subcommandFlags } from "../app/mi_ssl.ts";
import { loadPredictor, segmentScan } from "../app/predict.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { initBackend } from "../runtime/backend.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { decodeNifti } from "../io/nifti.ts";
import {
  buildPageModel,
  gunzipIfNeeded,
  type PageModel,
  readScanBytes,
  segmentScanInPage,
} from "../web/segment.ts";
import { cli } from "./_helpers.ts";
import { buildWebBundle } from "./_web.ts";

const FILES: PageFiles = {
  "index.html": new TextEncoder().encode("<p>page</p>"),
  "app.js": new Uint8Array(3),
  "model.json": new Uint8Array(2),
  "weights.ckpt": new Uint8Array(5),
};

Deno.test("serve answers GET and HEAD for its four files, 404 for any other path, 405 for any other method", async () => {
  const at = (path: string, method = "GET") =>
    answer(FILES, new Request(`http://127.0.0.1:8000${path}`, { method }));
  const page = at("/");
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(await page.text(), "<p>page</p>");
  assert.equal((await at("/weights.ckpt").arrayBuffer()).byteLength, 5);
  const head = at("/app.js", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  for (const path of ["/recipe.yaml", "/../best.ckpt", "/best.ckpt", "/web/app.ts"]) {
    const r = at(path);
    assert.equal(r.status, 404, path);
    await r.body?.cancel();
  }
  for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
    const r = at("/", method);
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.get("allow"), "GET, HEAD");
    await r.body?.cancel();
  }
});

Deno.test("mi-ssl serve may write only its --export folder, and nothing without it", () => {
  const flags = (args: string[]) => subcommandFlags("serve", args, "/fw/app/cli.ts", "/home/u");
  assert.deepEqual(flags(["run"]), ["--allow-read", "--allow-env", "--allow-net=127.0.0.1"]);
  assert.ok(flags(["run", "--export", "page"]).includes("--allow-write=/home/u/page"));
  assert.ok(flags(["run", "--export=/srv/p"]).includes("--allow-write=/srv/p"));
});

/** A 3D scan with a bright ellipsoid, an oblique affine and anisotropic spacing. */
function scan(): VolumeData {
  const shape = [7, 20, 24];
  const data = new Int16Array(7 * 20 * 24);
  for (let i = 0; i < 7; i++) {
    for (let j = 0; j < 20; j++) {
      for (let k = 0; k < 24; k++) {
        const r = ((i - 3) / 3) ** 2 + ((j - 9) / 7) ** 2 + ((k - 13) / 8) ** 2;
        data[(i * 20 + j) * 24 + k] = (r < 1 ? 300 : 40) + ((i * 7 + j * 3 + k) % 11);
      }
    }
  }
  const c = Math.cos(0.3), s = Math.sin(0.3);
  return {
    data,
    shape,
    spacing: [3, 1.2, 0.9],
    affine: [[0.9 * c, -1.2 * s, 0, 10], [0.9 * s, 1.2 * c, 0, -4], [0, 0, 3, 22], [0, 0, 0, 1]],
  };
}

Deno.test("serve --export writes the page; its model segments a scan as predict does, on the scan's grid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "serve_test_" });
  try {
    await Deno.writeTextFile(
      join(dir, "r.yaml"),
      "method: tiny\nbackend: wasm\ndataset: { type: phantom, patients: 6, slicesPerPatient: 2, " +
        "size: 32, split: { labeled: 2, unlabeled: 2, validation: 2 } }\n" +
        "model: { type: unet, base: 4, depth: 3 }\nregularizers: [{ type: mean-teacher }]\n" +
        "trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 }\n",
    );
    const run = join(dir, "run");
    const trained = await cli(["run", join(dir, "r.yaml"), "--out", run, "--quiet"]);
    assert.equal(trained.code, 0, trained.stderr);
    const page = join(dir, "page");
    await buildWebBundle();
    const exported = await cli(["serve", run, "--export", page]);
    assert.equal(exported.code, 0, exported.stderr);
    const names = [...Deno.readDirSync(page)].map((e) => e.name).sort();
    assert.deepEqual(names, ["app.js", "index.html", "model.json", "weights.ckpt"]);
    assert.match(exported.stdout, /wrote the page to /);

    // what the page does, in Deno, against predict's own path on the same (CPU) backend
    registerBuiltins();
    await initBackend("cpu");
    const predictor = await loadPredictor(run, { backend: "cpu" });
    const files = await pageFiles(run);
    assert.deepEqual(files["model.json"], await Deno.readFile(join(page, "model.json")));
    const meta = JSON.parse(new TextDecoder().decode(files["model.json"])) as PageModel;
    assert.deepEqual(meta.classNames, predictor.classNames);
    assert.deepEqual(meta.prep, predictor.prep);
    const model = buildPageModel(meta, files["weights.ckpt"]);
    const image = scan();
    const expected = await segmentScan(predictor, image, "scan.nii.gz");
    const result = await segmentScanInPage(model, meta, image, "scan.nii.gz");
    assert.deepEqual(result.labels, expected);
    const written = decodeNifti(await gunzipIfNeeded(result.nifti));
    assert.deepEqual(written.shape, image.shape);
    // NIfTI stores float32
    assert.deepEqual(written.spacing, image.spacing.map(Math.fround));
    for (const [r, row] of image.affine!.entries()) {
      for (const [c, v] of row.entries()) assert.ok(Math.abs(written.affine[r][c] - v) < 1e-5);
    }
    // volumes: voxels x 3 x 1.2 x 0.9 mm^3
    for (const [c, ml] of result.millilitres.entries()) {
      assert.ok(Math.abs(ml - (result.voxels[c] * 3 * 1.2 * 0.9) / 1000) < 1e-9);
    }
    assert.equal(result.voxels.reduce((a, b) => a + b, 0), 7 * 20 * 24);
    model.dispose();
    predictor.dispose();
    await assert.rejects(
      () => readScanBytes(new Uint8Array([1, 2, 3]), "notes.txt"),
      /Cannot read "notes\.txt": the page opens NIfTI scans/,
    );
    await assert.rejects(
      () => readScanBytes(new Uint8Array(10), "short.nii"),
      /Cannot read "short\.nii"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
