// deno-lint-ignore-file no-import-prefix -- a test-only dependency, kept out of deps.ts (which every module of the framework loads).
/**
 * The browser page of `serve`, end to end in a real browser: Debian's `chromium`, headless,
 * driven by puppeteer-core. A tiny run trained on four hippocampus scans is served; the page
 * opens a real scan, segments it in the browser, and its download must equal `predict`'s
 * output for the same run and scan, voxel for voxel, with the scan's shape and affine.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "npm:puppeteer-core@23.11.1";
import { readVolume } from "../io/volume.ts";
import { decodeNifti, type NiftiVolume } from "../io/nifti.ts";
import { gunzipIfNeeded } from "../web/segment.ts";
import { COMMAND_LAUNCH } from "../app/commands.ts";
import { cli } from "./_helpers.ts";
import { buildWebBundle } from "./_web.ts";
import { exists } from "../app/_fs.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HIPPOCAMPUS = Deno.env.get("HIPPOCAMPUS_ROOT") ??
  new URL("../../shared/data/hippocampus", import.meta.url).pathname;
const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
/** The README's screenshot, rewritten only on request (`BROWSER_FIGURE=1`), never by CI. */
const FIGURE = Deno.env.get("BROWSER_FIGURE") === "1"
  ? join(ROOT, "docs/figures/browser-page.png")
  : null;

const missing = !(await exists(CHROMIUM))
  ? `no chromium at ${CHROMIUM} (apt-get install chromium)`
  : !(await exists(join(HIPPOCAMPUS, "images")))
  ? `no hippocampus data at ${HIPPOCAMPUS}`
  : null;
if (missing) console.log(`browser_test: skipped: ${missing}`);

/**
 * Start `serve` with its task's flags on a free port, reading no more than the run and the
 * page's two files and writing nothing; resolves with its address.
 */
async function startServe(run: string): Promise<{ url: string; child: Deno.ChildProcess }> {
  const read = [run, join(ROOT, "web/index.html"), join(ROOT, "web/dist/app.js")];
  const flags = COMMAND_LAUNCH.serve.flags
    .filter((f) => f !== "--allow-write")
    .map((f) => (f === "--allow-read" ? `--allow-read=${read.join(",")}` : f));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, "app/cli.ts", "serve", run, "--port", "0"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
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

/** Voxels where two label volumes differ. */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

type Page = Awaited<ReturnType<Awaited<ReturnType<typeof puppeteer.launch>>["newPage"]>>;

/**
 * Open the page in a fresh headless Chromium (with `flags`), run `before` on it, open `scan`,
 * wait for the result and read the prediction the download link holds (none without a scan).
 */
async function openInPage(
  url: string,
  dir: string,
  flags: string[],
  before: ((page: Page, reach: (state: string) => Promise<void>) => Promise<void>) | null,
  scan: string | null,
  screenshot?: string,
): Promise<{ backend: string; nifti: NiftiVolume | null }> {
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
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    /** Wait for the page's state, or fail with what it says. */
    const reach = async (state: string) => {
      try {
        await page.waitForSelector(`body[data-state=${state}]`, { timeout: 30_000 });
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
    if (scan === null) return { backend, nifti: null };
    await (await page.$("input#file"))!.uploadFile(scan);
    await reach("done");
    assert.deepEqual(errors, []);
    if (screenshot) assert.ok((await page.screenshot({ path: screenshot })).length > 1000);
    const base64 = await page.$eval("#download", async (a) => {
      const bytes = new Uint8Array(
        await (await fetch((a as unknown as { href: string }).href)).arrayBuffer(),
      );
      let s = "";
      for (const b of bytes) s += String.fromCharCode(b);
      return btoa(s);
    });
    return {
      backend,
      nifti: decodeNifti(
        await gunzipIfNeeded(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))),
      ),
    };
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
      await buildWebBundle();

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
          `trainer: { iterations: 40, labeledBatch: 4, unlabeledBatch: 2, validateEvery: 40 }\n`,
      );
      const run = join(dir, "run");
      const trained = await cli(["run", join(dir, "r.yaml"), "--out", run, "--quiet"]);
      assert.equal(trained.code, 0, trained.stderr);
      const scan = join(dir, "data/images", names[3]);
      // predict on the CPU backend: the page's backend in a browser without WebGPU, the same
      // tfjs kernels, so the same numbers (wasm's SIMD kernels round differently)
      const pred = await cli([
        "predict",
        run,
        scan,
        "--out",
        join(dir, "pred"),
        "--backend",
        "cpu",
      ]);
      assert.equal(pred.code, 0, pred.stderr);

      const served = await startServe(run);
      server = served.child;
      const post = await fetch(served.url, { method: "POST", body: "x" });
      assert.equal(post.status, 405);
      await post.body?.cancel();
      const other = await fetch(new URL("recipe.yaml", served.url));
      assert.equal(other.status, 404);
      await other.body?.cancel();

      // the page in a browser without WebGPU (as CI's): the CPU backend, predict's numbers
      const cpu = await openInPage(
        served.url,
        dir,
        ["--disable-gpu"],
        async (page, reach) => {
          // an unreadable file: a clear message, and the page still works
          const bad = join(dir, "broken.nii.gz");
          await Deno.writeFile(bad, new Uint8Array([0x1f, 0x8b, 1, 2, 3]));
          await (await page.$("input#file"))!.uploadFile(bad);
          await reach("error");
          assert.match(
            await page.$eval("#error", (e) => e.textContent ?? ""),
            /Cannot read "broken\.nii\.gz"/,
          );
        },
        scan,
        FIGURE ?? join(dir, "page.png"),
      );
      assert.equal(cpu.backend, "cpu");
      assert.ok(cpu.nifti);
      const expected = await readVolume(
        join(dir, "pred", names[3].replace(/\.nii\.gz$/, "_pred.nii.gz")),
      );
      const image = await readVolume(scan);
      assert.deepEqual(cpu.nifti.shape, image.shape);
      assert.deepEqual(cpu.nifti.affine, image.affine);
      assert.deepEqual(cpu.nifti.spacing, image.spacing);
      assert.equal(cpu.nifti.datatype, "uint8");
      assert.equal(
        differing(cpu.nifti.data, expected.data),
        0,
        "voxels that differ from predict's",
      );

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
        full ? scan : null,
      );
      if (gpu.backend !== "webgpu") {
        console.log(`browser_test: this chromium offers no WebGPU adapter (${gpu.backend} only)`);
      } else if (gpu.nifti) {
        assert.deepEqual(gpu.nifti.shape, image.shape);
        assert.deepEqual(gpu.nifti.affine, image.affine);
        const n = differing(gpu.nifti.data, expected.data);
        console.log(`browser_test: webgpu: ${n} of ${expected.data.length} voxels differ`);
        assert.ok(n <= 0.001 * expected.data.length, `${n} voxels differ on webgpu`);
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
