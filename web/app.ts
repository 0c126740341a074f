/// <reference lib="dom" />
/**
 * The browser page of `serve`: open or drop a scan (NIfTI, or MetaImage: a `.mha`, or a `.mhd`
 * with its data file), segment it with the run's network in the browser (nothing is uploaded),
 * look through it slice by slice, read each class's volume and download the prediction. Bundled
 * with its imports by `serve` on first use (`app/page_bundle.ts`).
 *
 * @module
 */
import { tf, tfWasm } from "../deps.ts";
// The WebGPU backend registers itself on import (the framework imports it only when a run
// chooses it, runtime/webgpu.ts; the page takes it whenever the browser has WebGPU).
// deno-lint-ignore no-import-prefix -- the page's own dependency, versioned as the other tfjs packages.
import "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
import { initBackend } from "../runtime/backend.ts";
import type { VolumeData } from "../io/volume_data.ts";
import {
  buildPageModel,
  type PageModel,
  type PageResult,
  predictionName,
  readScanFiles,
  segmentScanInPage,
} from "./segment.ts";

const COLOURS: [number, number, number][] = [
  [0, 0, 0],
  [230, 25, 75],
  [60, 180, 75],
  [255, 225, 25],
  [0, 130, 200],
  [245, 130, 48],
  [145, 30, 180],
  [70, 240, 240],
];

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const say = (line: string) => ($("status").textContent = line);

interface View {
  image: VolumeData;
  result: PageResult;
  min: number;
  max: number;
}
let view: View | null = null;

/** Draw slice `slider` of the slowest axis, its rows upward (NIfTI's y points up). */
function draw(): void {
  if (!view) return;
  const { image, result } = view;
  const shape = image.shape.length === 2 ? [1, ...image.shape] : image.shape.slice(-3);
  const [d, h, w] = shape;
  const k = Math.min(d - 1, Number($<HTMLInputElement>("slice").value));
  $("slice-label").textContent = `slice ${k + 1} / ${d}`;
  const canvas = $<HTMLCanvasElement>("canvas");
  canvas.width = w;
  canvas.height = h;
  const scale = 400 / Math.max(w, h);
  canvas.style.width = `${Math.round(w * scale)}px`;
  canvas.style.height = `${Math.round(h * scale)}px`;
  const ctx = canvas.getContext("2d")!;
  const pixels = ctx.createImageData(w, h);
  const width = Number($<HTMLInputElement>("window").value) / 100 * (view.max - view.min);
  const level = view.min + Number($<HTMLInputElement>("level").value) / 100 * (view.max - view.min);
  const alpha = Number($<HTMLInputElement>("opacity").value) / 100;
  const lo = level - width / 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = k * h * w + y * w + x;
      const o = 4 * ((h - 1 - y) * w + x);
      const g = Math.max(0, Math.min(255, ((image.data[i] - lo) / Math.max(width, 1e-9)) * 255));
      const c = result.labels[i];
      const a = c > 0 ? alpha : 0;
      const col = COLOURS[c % COLOURS.length];
      pixels.data[o] = g * (1 - a) + col[0] * a;
      pixels.data[o + 1] = g * (1 - a) + col[1] * a;
      pixels.data[o + 2] = g * (1 - a) + col[2] * a;
      pixels.data[o + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
}

/**
 * Which backend runs the network, and why: WebGPU where the browser has an adapter, else wasm
 * (tfjs's wasm binaries, served beside the bundle, with this framework's wasm kernels, as
 * `predict`'s default backend), else tfjs's CPU backend (JavaScript kernels, as
 * `predict --backend cpu`). `?backend=webgpu`, `?backend=wasm` or `?backend=cpu` in the address
 * asks for one. No threads: the page is not cross-origin isolated, so it has no
 * `SharedArrayBuffer`.
 */
async function startBackend(): Promise<{ backend: string; note: string }> {
  const asked = new URLSearchParams(location.search).get("backend");
  if (asked !== null && !["webgpu", "wasm", "cpu"].includes(asked)) {
    throw new Error(`unknown backend "${asked}" in the address; use webgpu, wasm or cpu`);
  }
  const notes: string[] = [];
  if (asked === null || asked === "webgpu") {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
    if (adapter) {
      try {
        if (await tf.setBackend("webgpu")) {
          await tf.ready();
          return { backend: tf.getBackend(), note: "" };
        }
        notes.push("WebGPU did not start");
      } catch (error) {
        notes.push(`WebGPU did not start (${(error as Error).message})`);
      }
    } else notes.push("this browser offers no WebGPU adapter");
  }
  if (asked !== "cpu") {
    try {
      // beside the page; the threaded build is never asked for (no SharedArrayBuffer here)
      tfWasm.setWasmPaths(new URL("./", location.href).href);
      return { backend: await initBackend("wasm"), note: notes.join("; ") };
    } catch (error) {
      notes.push(`wasm did not start (${(error as Error).message})`);
    }
  }
  return { backend: await initBackend("cpu"), note: notes.join("; ") };
}

async function main(): Promise<void> {
  say("loading the model");
  const meta = await (await fetch("model.json")).json() as PageModel;
  const weights = new Uint8Array(await (await fetch("weights.ckpt")).arrayBuffer());
  const { backend, note } = await startBackend();
  const model = buildPageModel(meta, weights);
  $("model").textContent = `Run "${meta.run}" (${meta.checkpoint}), classes ` +
    `${meta.classNames.join(", ")}, input ${meta.prep.size} x ${meta.prep.size}, ` +
    `tfjs backend ${backend}${note ? ` (${note})` : ""}`;
  document.body.dataset.backend = backend;
  const legend = $("legend");
  legend.innerHTML = "";
  for (const [c, name] of meta.classNames.entries()) {
    if (c === 0) continue;
    const row = document.createElement("tr");
    row.innerHTML = `<td><span class="swatch" style="background:rgb(${COLOURS[c % 8]})">` +
      `</span> ${name}</td><td class="num" id="ml-${c}">-</td>`;
    legend.append(row);
  }

  const open = async (files: File[]) => {
    $("error").textContent = "";
    document.body.dataset.state = "running";
    const start = performance.now();
    let name = files.map((f) => f.name).join(", ");
    try {
      say(`reading ${name}`);
      const read = await readScanFiles(files.map((f) => ({
        name: f.name,
        bytes: async () => new Uint8Array(await f.arrayBuffer()),
      })));
      const image = read.image;
      name = read.name;
      const result = await segmentScanInPage(model, meta, image, name, (line) => {
        say(`${name}: ${line}`);
      });
      let min = Infinity, max = -Infinity;
      for (const v of image.data) (v < min && (min = v), v > max && (max = v));
      view = { image, result, min, max };
      const depth = image.shape.length === 2 ? 1 : image.shape[image.shape.length - 3];
      const slider = $<HTMLInputElement>("slice");
      slider.max = String(depth - 1);
      slider.value = String(Math.floor(depth / 2));
      for (const [c, ml] of result.millilitres.entries()) {
        if (c > 0) $(`ml-${c}`).textContent = `${ml.toFixed(3)} mL (${result.voxels[c]} voxels)`;
      }
      const link = $<HTMLAnchorElement>("download");
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(new Blob([result.nifti as Uint8Array<ArrayBuffer>]));
      link.download = predictionName(name);
      link.hidden = false;
      draw();
      say(
        `${name}: [${image.shape.join(" x ")}] segmented in ` +
          `${((performance.now() - start) / 1000).toFixed(1)} s on ${backend}`,
      );
      document.body.dataset.state = "done";
    } catch (error) {
      $("error").textContent = (error as Error).message;
      say(`${name}: not segmented`);
      document.body.dataset.state = "error";
    }
  };
  $<HTMLInputElement>("file").addEventListener("change", (e) => {
    const files = [...(e.target as HTMLInputElement).files ?? []];
    if (files.length) open(files);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => e.preventDefault());
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const files = [...e.dataTransfer?.files ?? []];
    if (files.length) open(files);
  });
  for (const id of ["slice", "opacity", "window", "level"]) $(id).addEventListener("input", draw);
  say(`ready: open or drop a scan (nothing leaves this computer)`);
  document.body.dataset.state = "ready";
  (globalThis as Record<string, unknown>).tf = tf;
}

main().catch((error) => {
  $("error").textContent = `Cannot start: ${(error as Error).message}`;
  document.body.dataset.state = "error";
});
