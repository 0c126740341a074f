import assert from "node:assert/strict";
import { join } from "node:path";
import { answer, CSP, type PageFiles } from "../app/serve.ts";
import { subcommandFlags } from "../app/mi_ssl.ts";
import { loadPredictor, segmentScan, writeNiftiLabels } from "../app/predict.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { initBackend } from "../runtime/backend.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { readMetaImage, writeMetaImage } from "../io/metaimage.ts";
import { decodeNifti, readNifti } from "../io/nifti.ts";
import {
  buildPageModel,
  gunzipIfNeeded,
  type PageFile,
  type PageModel,
  predictionName,
  readScanFiles,
  segmentScanInPage,
} from "../web/segment.ts";
import { cli } from "./_helpers.ts";

const FILES: PageFiles = {
  "index.html": new TextEncoder().encode("<p>page</p>"),
  "app.js": new Uint8Array(3),
  "tfjs-backend-wasm.wasm": new Uint8Array(7),
  "tfjs-backend-wasm-simd.wasm": new Uint8Array(8),
  "model.json": new Uint8Array(2),
  "weights.ckpt": new Uint8Array(5),
};

Deno.test("serve answers GET and HEAD for its six files, 404 for any other path, 405 for any other method", async () => {
  const at = (path: string, method = "GET") =>
    answer(FILES, new Request(`http://127.0.0.1:8000${path}`, { method }));
  const page = at("/");
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(await page.text(), "<p>page</p>");
  // the page compiles WebAssembly and loads nothing from elsewhere
  assert.equal(page.headers.get("content-security-policy"), CSP);
  assert.match(CSP, /script-src 'self' 'wasm-unsafe-eval';/);
  const wasm = at("/tfjs-backend-wasm-simd.wasm");
  assert.equal(wasm.headers.get("content-type"), "application/wasm");
  assert.equal((await wasm.arrayBuffer()).byteLength, 8);
  assert.equal((await at("/weights.ckpt").arrayBuffer()).byteLength, 5);
  const head = at("/app.js", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  for (
    const path of [
      "/recipe.yaml",
      "/../best.ckpt",
      "/best.ckpt",
      "/web/app.ts",
      "/tfjs-backend-wasm-threaded-simd.wasm",
    ]
  ) {
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

Deno.test("mi-ssl serve may write only its bundle cache and its --export folder, and start deno", () => {
  const env = (cache?: string) => (name: string) => name === "MISSL_CACHE_DIR" ? cache : undefined;
  const flags = (args: string[], cache?: string) =>
    subcommandFlags("serve", args, "/fw/app/cli.ts", "/home/u", env(cache));
  const rest = ["--allow-env", "--allow-net=127.0.0.1", "--allow-run=deno"];
  assert.deepEqual(flags(["run"], "/c"), ["--allow-read", "--allow-write=/c/web", ...rest]);
  assert.deepEqual(flags(["run"]), ["--allow-read", ...rest]);
  assert.ok(flags(["run", "--export", "page"], "/c").includes("--allow-write=/c/web,/home/u/page"));
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
    // the bundle is built on first use into the cache, and reused
    const env = { MISSL_CACHE_DIR: join(dir, "cache") };
    const exported = await cli(["serve", run, "--export", page], { env, allowRun: true });
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /building the page's bundle into .*cache\/web\/[0-9a-f]{16} /);
    const names = [...Deno.readDirSync(page)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "app.js",
      "index.html",
      "model.json",
      "tfjs-backend-wasm-simd.wasm",
      "tfjs-backend-wasm.wasm",
      "weights.ckpt",
    ]);
    assert.match(exported.stdout, /wrote the page to /);
    const again = await cli(["serve", run, "--export", join(dir, "page2")], {
      env,
      allowRun: true,
    });
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /building/);
    assert.deepEqual(
      await Deno.readFile(join(dir, "page2", "app.js")),
      await Deno.readFile(join(page, "app.js")),
    );
    // reproducible: the bundle task, from a second empty cache, builds the same bytes
    const task = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-run=deno",
        new URL("../app/bundle_web.ts", import.meta.url).pathname,
        join(dir, "page3"),
      ],
      env: { MISSL_CACHE_DIR: join(dir, "cache2"), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    });
    const built = await task.output();
    const said = new TextDecoder().decode(built.stdout);
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
    assert.match(said, /building the page's bundle into .*cache2\/web\/[0-9a-f]{16} /);
    assert.match(said, /^app\.js {2}\d+ bytes {2}sha256 [0-9a-f]{64}$/m);
    assert.deepEqual(
      await Deno.readFile(join(dir, "page3", "app.js")),
      await Deno.readFile(join(page, "app.js")),
    );

    // what the page does, in Deno, against predict's own path on the same (CPU) backend
    registerBuiltins();
    await initBackend("cpu");
    const predictor = await loadPredictor(run, { backend: "cpu" });
    const meta = JSON.parse(await Deno.readTextFile(join(page, "model.json"))) as PageModel;
    assert.deepEqual(meta.classNames, predictor.classNames);
    assert.deepEqual(meta.prep, predictor.prep);
    const model = buildPageModel(meta, await Deno.readFile(join(page, "weights.ckpt")));
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

    // MetaImage: the page reads it with io/metaimage.ts from the files' bytes, and writes the
    // prediction as predict --format nifti does (LPS header turned to RAS)
    await writeMetaImage(join(dir, "scan.mha"), image);
    await writeMetaImage(join(dir, "scan.mhd"), image, { compress: true });
    const file = (name: string): PageFile => ({
      name,
      bytes: () => Deno.readFile(join(dir, name)),
    });
    const mha = await readScanFiles([file("scan.mha")]);
    const onDisk = await readMetaImage(join(dir, "scan.mha"));
    assert.deepEqual(mha.image, onDisk);
    const mhd = await readScanFiles([file("scan.zraw"), file("scan.mhd")]);
    assert.equal(mhd.name, "scan.mhd");
    assert.deepEqual(mhd.image.data, onDisk.data);
    assert.deepEqual(mhd.image.affine, onDisk.affine);
    const fromMha = await segmentScanInPage(model, meta, mha.image, "scan.mha");
    await writeNiftiLabels(join(dir, "mha_pred.nii.gz"), fromMha.labels, onDisk, "scan.mha");
    const predicted = await readNifti(join(dir, "mha_pred.nii.gz"));
    const inPage = decodeNifti(await gunzipIfNeeded(fromMha.nifti));
    assert.deepEqual(inPage.affine, predicted.affine);
    assert.notDeepEqual(inPage.affine, written.affine);
    assert.deepEqual(inPage.data, predicted.data);
    assert.deepEqual(fromMha.labels, await segmentScan(predictor, onDisk, "scan.mha"));
    assert.equal(predictionName("scan.mha"), "scan_pred.nii.gz");
    assert.equal(predictionName("case 1.nii.gz"), "case 1_pred.nii.gz");
    model.dispose();
    predictor.dispose();

    const bytes = (name: string, data: Uint8Array): PageFile => ({
      name,
      bytes: () => Promise.resolve(data),
    });
    await assert.rejects(
      () => readScanFiles([bytes("notes.txt", new Uint8Array([1, 2, 3]))]),
      /Cannot read "notes\.txt": the page opens NIfTI scans \(\.nii, \.nii\.gz\) and MetaImage/,
    );
    await assert.rejects(
      () => readScanFiles([bytes("short.nii", new Uint8Array(10))]),
      /Cannot read "short\.nii"/,
    );
    await assert.rejects(
      () => readScanFiles([file("scan.mhd")]),
      /Cannot read "scan\.mhd": its data file "scan\.zraw" was not given; open \(or drop\) scan\.mhd and scan\.zraw together/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
