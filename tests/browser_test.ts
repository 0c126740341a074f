// deno-lint-ignore-file no-import-prefix -- a test-only dependency, kept out of deps.ts (which every module of the framework loads).
/**
 * The browser page of `serve`, end to end in a real browser: Debian's `chromium`, headless,
 * driven by puppeteer-core. A tiny run trained on four hippocampus scans is served; the page
 * opens a real scan (NIfTI, and the same scan as MetaImage), segments it in the browser on wasm
 * and on the CPU backend, and each download must equal `predict`'s output for the same run, scan
 * and backend, voxel for voxel, with the scan's shape and affine.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "npm:puppeteer-core@23.11.1";
import { readVolume } from "../io/volume.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { writeMetaImage } from "../io/metaimage.ts";
import { decodeNifti, type NiftiVolume } from "../io/nifti.ts";
import { gunzipIfNeeded } from "../web/segment.ts";
import { COMMAND_LAUNCH } from "../app/commands.ts";
import { cli } from "./_helpers.ts";
import { exists } from "../app/_fs.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HIPPOCAMPUS = Deno.env.get("HIPPOCAMPUS_ROOT") ??
  new URL("../../shared/data/hippocampus", import.meta.url).pathname;
const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
/** The README's screenshot, rewritten only on request (`BROWSER_FIGURE=1`), never by CI. */
const FIGURE = Deno.env.get("BROWSER_FIGURE") === "1"
  ? join(ROOT, "docs/figures/browser-page.png")
  : null;
/** Iterations of the test's run: a few for the test, enough for a figure to show a segmentation. */
const ITERATIONS = FIGURE ? 800 : 40;

const missing = !(await exists(CHROMIUM))
  ? `no chromium at ${CHROMIUM} (apt-get install chromium)`
  : !(await exists(join(HIPPOCAMPUS, "images")))
  ? `no hippocampus data at ${HIPPOCAMPUS}`
  : null;
if (missing) console.log(`browser_test: skipped: ${missing}`);

/** {@linkcode CONV_PROBE} in a child Deno on the framework's wasm backend, as predict runs. */
async function convOnWasm(): Promise<number[]> {
  const code = `import { tf } from "${new URL("../deps.ts", import.meta.url).href}";\n` +
    `import { initBackend } from "${new URL("../runtime/backend.ts", import.meta.url).href}";\n` +
    `await initBackend("wasm");\nconsole.log(JSON.stringify((${CONV_PROBE})(tf)));\n`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

/** Deno's npm cache (where `serve` finds tfjs's wasm binaries). */
async function npmCache(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .output();
  return JSON.parse(new TextDecoder().decode(out.stdout)).npmCache;
}

/**
 * Start `serve` with its task's flags on a free port, reading no more than the run, the sources
 * (hashed for the bundle's key), Deno's npm cache and the bundle cache, and writing nothing but
 * the bundle cache (`cache`, its `MISSL_CACHE_DIR`); resolves with its address.
 */
async function startServe(
  run: string,
  cache: string,
): Promise<{ url: string; child: Deno.ChildProcess }> {
  const read = [run, ROOT, await npmCache(), cache];
  const flags = COMMAND_LAUNCH.serve.flags
    .map((f) => (f === "--allow-write" ? `--allow-write=${join(cache, "web")}` : f))
    .map((f) => (f === "--allow-read" ? `--allow-read=${read.join(",")}` : f));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, "app/cli.ts", "serve", run, "--port", "0"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1", MISSL_CACHE_DIR: cache },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve ended before listening: ${text}`);
    text += value;
    const m = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(text);
    if (m) {
      // keep draining its output
      (async () => {
        while (!(await reader.read()).done);
      })();
      return { url: m[1], child };
    }
  }
}

/**
 * A convolution with fixed inputs, as a function of a tfjs instance: its output bits tell
 * which kernels ran (the framework's wasm kernels and tfjs's own sum in different orders).
 */
const CONV_PROBE = `(tf) => {
  const x = tf.tensor4d(Array.from({ length: 2 * 17 * 19 * 16 }, (_, i) => Math.sin(i * 0.37)),
    [2, 17, 19, 16]);
  const w = tf.tensor4d(Array.from({ length: 3 * 3 * 16 * 8 }, (_, i) => Math.cos(i * 0.11)),
    [3, 3, 16, 8]);
  return Array.from(tf.conv2d(x, w, 1, "same").dataSync());
}`;

/** Voxels where two label volumes differ. */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

type Page = Awaited<ReturnType<Awaited<ReturnType<typeof puppeteer.launch>>["newPage"]>>;

/**
 * Open the page in a fresh headless Chromium (with `flags`), run `before` on it, open each group
 * of files of `scans` in turn (the files selected together), wait for each result and read the
 * prediction the download link holds, with its name.
 */
async function openInPage(
  url: string,
  dir: string,
  flags: string[],
  before: ((page: Page, reach: (state: string) => Promise<void>) => Promise<void>) | null,
  scans: string[][],
  screenshot?: string,
): Promise<{ backend: string; said: string; results: { name: string; nifti: NiftiVolume }[] }> {
  const profile = await Deno.makeTempDir({ prefix: "chromium_", dir });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...flags,
      "--no-sandbox",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
    ],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 640 });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    // an error, or the framework's warning that one of its kernels gave way to tfjs's
    page.on("console", (m) => {
      if (m.type() === "error" || /^mi-ssl:/.test(m.text())) errors.push(m.text());
    });
    /** Wait for the page's state, or fail with what it says. */
    const reach = async (state: string) => {
      try {
        await page.waitForSelector(`body[data-state=${state}]`, { timeout: 120_000 });
      } catch (error) {
        const said = await page.$eval("body", (b) => b.innerText).catch(() => "");
        throw new Error(`the page did not reach "${state}": ${said}\n${errors.join("\n")}`, {
          cause: error,
        });
      }
    };
    await page.goto(url);
    await reach("ready");
    await before?.(page, reach);
    const backend = await page.$eval("body", (b) => b.dataset.backend ?? "");
    const said = await page.$eval("#model", (e) => e.textContent ?? "");
    const results = [];
    for (const files of scans) {
      await page.$eval("body", (b) => (b.dataset.state = "waiting"));
      await (await page.$("input#file"))!.uploadFile(...files);
      await reach("done");
      assert.deepEqual(errors, []);
      console.log(`browser_test: ${await page.$eval("#status", (e) => e.textContent ?? "")}`);
      if (screenshot) assert.ok((await page.screenshot({ path: screenshot })).length > 1000);
      const [name, base64] = await page.$eval("#download", async (a) => {
        const link = a as unknown as { href: string; download: string };
        const bytes = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
        let s = "";
        for (const b of bytes) s += String.fromCharCode(b);
        return [link.download, btoa(s)];
      });
      results.push({
        name,
        nifti: decodeNifti(
          await gunzipIfNeeded(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))),
        ),
      });
    }
    return { backend, said, results };
  } finally {
    await browser.close();
  }
}

Deno.test({
  name: "the served page segments a real scan in the browser exactly as predict does",
  ignore: missing !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "browser_test_" });
    let server: Deno.ChildProcess | undefined;
    try {
      // a tiny run (a mean teacher: the page gets the teacher's weights) on four real scans
      const names = [...Deno.readDirSync(join(HIPPOCAMPUS, "images"))].map((e) => e.name)
        .filter((n) => n.endsWith(".nii.gz")).sort().slice(0, 4);
      for (const sub of ["images", "labels"]) {
        await Deno.mkdir(join(dir, "data", sub), { recursive: true });
        for (const n of names) {
          await Deno.symlink(join(HIPPOCAMPUS, sub, n), join(dir, "data", sub, n));
        }
      }
      await Deno.writeTextFile(
        join(dir, "r.yaml"),
        `method: tiny\nbackend: wasm\n` +
          `dataset: { type: folder, root: data, size: 32, cache: false, classes: [background, anterior, posterior], ` +
          `split: { labeled: 2, unlabeled: 1, validation: 1 } }\n` +
          `model: { type: unet, base: 8, depth: 3 }\nregularizers: [{ type: mean-teacher }]\n` +
          `trainer: { iterations: ${ITERATIONS}, labeledBatch: 4, unlabeledBatch: 2, validateEvery: ${ITERATIONS} }\n`,
      );
      const run = join(dir, "run");
      const trained = await cli(["run", join(dir, "r.yaml"), "--out", run, "--quiet"]);
      assert.equal(trained.code, 0, trained.stderr);
      const scan = join(dir, "data/images", names[3]);
      // the same scan as MetaImage: one .mha, and a .mhd with its compressed data file
      const image = await readVolume(scan);
      const stem = names[3].replace(/\.nii\.gz$/, "");
      const mha = join(dir, "meta", `${stem}.mha`);
      const mhd = join(dir, "meta", `${stem}.mhd`);
      await Deno.mkdir(join(dir, "meta"));
      await writeMetaImage(mha, image);
      await writeMetaImage(mhd, image, { compress: true });
      /** predict's output for `input` on `backend`, as NIfTI (the page's download). */
      const predicted = async (input: string, backend: string) => {
        const out = join(dir, `pred-${backend}-${basename(input)}`);
        const r = await cli([
          "predict",
          run,
          input,
          "--out",
          out,
          "--backend",
          backend,
          "--format",
          "nifti",
        ]);
        assert.equal(r.code, 0, r.stderr);
        return await readVolume(join(out, `${stem}_pred.nii.gz`));
      };
      const cpuExpected = await predicted(scan, "cpu");
      const wasmExpected = await predicted(scan, "wasm");
      const mhaExpected = await predicted(mha, "wasm");
      const cache = join(dir, "cache");
      const served = await startServe(run, cache);
      server = served.child;
      const post = await fetch(served.url, { method: "POST", body: "x" });
      assert.equal(post.status, 405);
      await post.body?.cancel();
      const other = await fetch(new URL("recipe.yaml", served.url));
      assert.equal(other.status, 404);
      await other.body?.cancel();
      const csp = await fetch(served.url);
      assert.match(csp.headers.get("content-security-policy") ?? "", /'wasm-unsafe-eval'/);
      await csp.body?.cancel();

      /** The prediction's geometry is the scan's, and its labels are `expected`'s. */
      const same = (got: NiftiVolume, expected: VolumeData, what: string) => {
        assert.deepEqual(got.shape, image.shape, what);
        assert.deepEqual(got.affine, expected.affine, what);
        assert.deepEqual(got.spacing, image.spacing, what);
        assert.equal(got.datatype, "uint8", what);
        assert.equal(
          differing(got.data, expected.data),
          0,
          `voxels that differ from predict's (${what})`,
        );
      };

      // the page in a browser without WebGPU (as CI's): wasm, predict's default backend, with
      // the framework's own wasm kernels: predict's numbers; NIfTI and MetaImage
      const wasm = await openInPage(
        served.url,
        dir,
        ["--disable-gpu"],
        async (page, reach) => {
          // the page's wasm runs the framework's kernels, as predict's: the same bits
          const inPage = await page.evaluate(
            `(${CONV_PROBE})(globalThis.tf)`,
          ) as number[];
          assert.deepEqual(inPage, await convOnWasm(), "the page's wasm kernels are predict's");
          // an unreadable file, a .mhd without its data file: a clear message, the page still works
          const bad = join(dir, "broken.nii.gz");
          await Deno.writeFile(bad, new Uint8Array([0x1f, 0x8b, 1, 2, 3]));
          await (await page.$("input#file"))!.uploadFile(bad);
          await reach("error");
          assert.match(
            await page.$eval("#error", (e) => e.textContent ?? ""),
            /Cannot read "broken\.nii\.gz"/,
          );
          await page.$eval("body", (b) => (b.dataset.state = "waiting"));
          await (await page.$("input#file"))!.uploadFile(mhd);
          await reach("error");
          assert.match(
            await page.$eval("#error", (e) => e.textContent ?? ""),
            new RegExp(`data file "${stem}\\.zraw" was not given`),
          );
        },
        [[scan], [mha], [mhd, join(dir, "meta", `${stem}.zraw`)]],
        FIGURE ?? join(dir, "page.png"),
      );
      assert.equal(wasm.backend, "wasm", wasm.said);
      assert.match(wasm.said, /no WebGPU adapter/);
      assert.deepEqual(wasm.results.map((r) => r.name), Array(3).fill(`${stem}_pred.nii.gz`));
      same(wasm.results[0].nifti, wasmExpected, "wasm, NIfTI");
      same(wasm.results[1].nifti, mhaExpected, "wasm, .mha");
      same(wasm.results[2].nifti, mhaExpected, "wasm, .mhd + .zraw");

      // ?backend=cpu: tfjs's JavaScript kernels, as predict --backend cpu
      const cpu = await openInPage(`${served.url}?backend=cpu`, dir, ["--disable-gpu"], null, [[
        scan,
      ]]);
      assert.equal(cpu.backend, "cpu");
      same(cpu.results[0].nifti, cpuExpected, "cpu, NIfTI");

      // with WebGPU (Chromium's software adapter, SwiftShader, where it has one) the page
      // takes the webgpu backend. Segmenting there takes ~40 s on two CPU cores (measured: the
      // same labels as predict's, 0 voxels differ), so only on request (BROWSER_WEBGPU=1); its
      // kernels round differently, so a voxel whose two best classes tie within rounding may flip
      const full = Deno.env.get("BROWSER_WEBGPU") === "1";
      const gpu = await openInPage(
        served.url,
        dir,
        ["--enable-unsafe-webgpu"],
        null,
        full ? [[scan]] : [],
      );
      if (gpu.backend !== "webgpu") {
        console.log(`browser_test: this chromium offers no WebGPU adapter (${gpu.backend} only)`);
      } else if (gpu.results.length) {
        const got = gpu.results[0].nifti;
        assert.deepEqual(got.shape, image.shape);
        assert.deepEqual(got.affine, image.affine);
        const n = differing(got.data, wasmExpected.data);
        console.log(`browser_test: webgpu: ${n} of ${got.data.length} voxels differ`);
        assert.ok(n <= 0.001 * got.data.length, `${n} voxels differ on webgpu`);
      }
      if (gpu.backend === "webgpu") {
        // ?backend=wasm passes over the adapter
        const forced = await openInPage(
          `${served.url}?backend=wasm`,
          dir,
          ["--enable-unsafe-webgpu"],
          null,
          [],
        );
        assert.equal(forced.backend, "wasm", forced.said);
      }
    } finally {
      if (server) {
        server.kill("SIGTERM");
        await server.status;
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});
