/**
 * `serve <run-dir>`: a local page that segments a scan in the browser with a trained run,
 * nothing uploaded. A server on 127.0.0.1 answers GET and HEAD for six files only: the page
 * (`index.html`), its bundle (`app.js`, built on first use from the framework's own modules into
 * the cache, `page_bundle.ts`), tfjs's two wasm binaries, `model.json` (class names,
 * preprocessing, the model's plugin and options) and `weights.ckpt` (the weights of the network
 * the run evaluates); any other method is refused (405), any other path is 404. `--export <dir>`
 * writes the same six files to a folder for any static host instead.
 *
 * @module
 */
import { basename, join, resolve } from "node:path";
import { encodeCheckpoint } from "../core/checkpoint.ts";
import { UserError } from "../core/errors.ts";
import type { Command, tf } from "../deps.ts";
import { PAGE_MODEL_NAME, type PageModel } from "../web/segment.ts";
import { PAGE_HTML } from "../web/page_html.ts";
import { type PageBundle, pageBundle } from "./page_bundle.ts";
import { loadPredictor } from "./predict.ts";

/** The six files of the page, by name. */
export interface PageFiles extends PageBundle {
  "index.html": Uint8Array;
  "model.json": Uint8Array;
  "weights.ckpt": Uint8Array;
}

const TYPES: Record<keyof PageFiles, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "tfjs-backend-wasm.wasm": "application/wasm",
  "tfjs-backend-wasm-simd.wasm": "application/wasm",
  "model.json": "application/json",
  "weights.ckpt": "application/octet-stream",
};

/**
 * The page's files for a run: its network (a mean teacher's teacher) as `student/...` weights of
 * its model, built on the CPU backend, and the bundle ({@linkcode pageBundle}: built into the
 * cache on first use, `log` says so).
 *
 * @throws {UserError} For a bad run folder or a bundle that cannot be built.
 */
export async function pageFiles(
  runDir: string,
  options: { checkpoint?: "best" | "latest"; log?: (line: string) => void } = {},
): Promise<PageFiles> {
  const bundle = await pageBundle(options.log);
  const predictor = await loadPredictor(runDir, { checkpoint: options.checkpoint, backend: "cpu" });
  try {
    const weights = new Map<string, tf.Tensor>();
    for (const [key, v] of [...predictor.model.trainable, ...predictor.model.state]) {
      weights.set(`${PAGE_MODEL_NAME}/${key.slice(key.indexOf("/") + 1)}`, v);
    }
    const meta: PageModel = {
      run: basename(resolve(runDir)),
      checkpoint: basename(predictor.checkpoint),
      classNames: predictor.classNames,
      prep: predictor.prep,
      model: predictor.modelSpec,
    };
    return {
      "index.html": new TextEncoder().encode(PAGE_HTML),
      ...bundle,
      "model.json": new TextEncoder().encode(JSON.stringify(meta, null, 2) + "\n"),
      "weights.ckpt": await encodeCheckpoint({ run: meta.run }, weights),
    };
  } finally {
    predictor.dispose();
  }
}

/** The server's answer to one request: the page's files for GET / HEAD, nothing else. */
export function answer(files: PageFiles, request: Request): Response {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("405 Method Not Allowed: this server only serves its page\n", {
      status: 405,
      headers: { allow: "GET, HEAD" },
    });
  }
  const path = new URL(request.url).pathname.slice(1) || "index.html";
  if (!(path in files)) return new Response("404 Not Found\n", { status: 404 });
  const name = path as keyof PageFiles;
  return new Response(request.method === "HEAD" ? null : files[name] as Uint8Array<ArrayBuffer>, {
    headers: {
      "content-type": TYPES[name],
      "content-length": String(files[name].length),
      "cache-control": "no-store",
      "content-security-policy": CSP,
    },
  });
}

/**
 * The page's Content-Security-Policy: it fetches its own files only; `'wasm-unsafe-eval'` lets it
 * compile WebAssembly (tfjs's binaries and the framework's kernels, made in `runtime/kernels/`).
 */
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; " +
  "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self' blob:";

/** Options of {@linkcode servePage}. */
export interface ServeOptions {
  /** The port; 0 picks a free one. @default {8000} */
  port?: number;
  /** Called with the page's address once the server listens. */
  onListen?: (url: string) => void;
  /** Stops the server. */
  signal?: AbortSignal;
}

/** Serve `files` on 127.0.0.1 until `signal` aborts. */
export function servePage(files: PageFiles, options: ServeOptions = {}): Deno.HttpServer {
  return Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 8000,
    signal: options.signal,
    onListen: ({ port }) => options.onListen?.(`http://127.0.0.1:${port}/`),
  }, (request) => answer(files, request));
}

/** Write the page's files to `dir` (created), for a static host. */
export async function exportPage(files: PageFiles, dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    for (const [name, bytes] of Object.entries(files)) await Deno.writeFile(join(dir, name), bytes);
  } catch (error) {
    throw new UserError(`Cannot write the page to "${dir}": ${(error as Error).message}`);
  }
}

/** Add `serve <run-dir> [--port N] [--export DIR] [--checkpoint best|latest]` to the CLI. */
export function addServeCommand(program: Command, cwd: () => string): void {
  program.command("serve")
    .description(
      "Serve a page on 127.0.0.1 that segments a scan in the browser with a run (nothing is " +
        "uploaded), or write it to a folder with --export",
    )
    .argument("<run-dir>", "the run folder")
    .option("--port <n>", "port on 127.0.0.1", "8000")
    .option("--export <dir>", "write the page, its bundle and the weights to a folder instead")
    .option("--checkpoint <which>", "best | latest", "best")
    .action(async (runDir: string, opts: { port: string; export?: string; checkpoint: string }) => {
      if (opts.checkpoint !== "best" && opts.checkpoint !== "latest") {
        throw new UserError(`Unknown checkpoint "${opts.checkpoint}"; use best or latest`);
      }
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new UserError(`--port must be a port number, not "${opts.port}"`);
      }
      const files = await pageFiles(resolve(cwd(), runDir), {
        checkpoint: opts.checkpoint,
        log: (line) => console.log(line),
      });
      if (opts.export !== undefined) {
        const dir = resolve(cwd(), opts.export);
        await exportPage(files, dir);
        console.log(`wrote the page to ${dir} (${Object.keys(files).join(", ")})`);
        return;
      }
      const server = servePage(files, {
        port,
        onListen: (url) => console.log(`serving ${runDir} at ${url} (Ctrl-C stops)`),
      });
      await server.finished;
    });
}
