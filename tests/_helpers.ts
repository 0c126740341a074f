import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import assert from "node:assert/strict";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Use the wasm backend (with our training kernels), once per test process. */
export async function useWasm(): Promise<void> {
  await initBackend("wasm");
}

/**
 * A temporary folder for the tests of one module, removed when the module's tests are done
 * (Deno runs each test module in its own worker and fires `unload` at its end, whichever tests
 * ran, passed or failed), so that no test has to run last to clean up.
 */
export function moduleTempDir(prefix: string): string {
  const dir = Deno.makeTempDirSync({ prefix });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // already gone
    }
  });
  return dir;
}

/**
 * Milliseconds of CPU time (user + system, every thread of this process) that `fn` takes: unlike
 * the wall clock, it does not grow when other processes keep the machine busy.
 */
export async function cpuMilliseconds(fn: () => unknown): Promise<number> {
  const start = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

/** Assert `actual` is within `tol` (absolute + relative) of `expected`. */
export function assertClose(actual: number, expected: number, tol = 1e-5, message = ""): void {
  const ok = Math.abs(actual - expected) <= tol * (1 + Math.abs(expected));
  assert.ok(ok, `${message} expected ${expected}, got ${actual} (tol ${tol})`);
}

/** Assert `fn` leaves no tensor behind (tfjs's expectNoLeakedTensors, run twice). */
export async function assertNoLeak(fn: () => unknown | Promise<unknown>): Promise<void> {
  await fn();
  const before = tf.memory().numTensors;
  await fn();
  await fn();
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
}

/** A `[B, H, W, C]` random probability map from a seed. */
export function randomProbs(shape: [number, number, number, number], seed: number): tf.Tensor4D {
  return tf.tidy(() =>
    tf.softmax(tf.mul(tf.randomNormal(shape, 0, 1, "float32", seed), 2)) as tf.Tensor4D
  );
}

/** The repository's root folder. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** `app/cli.ts`. */
export const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));

/** What a subprocess printed, and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode cli}. */
export interface CliOptions {
  /** The working directory. @default {ROOT} */
  cwd?: string;
  /** Also grant `--allow-run` (sweeps with `--jobs`). @default {false} */
  allowRun?: boolean;
  /** Variables to add to the environment (`NO_COLOR=1` always). */
  env?: Record<string, string>;
  /** Variables to remove from the environment (e.g. `XDG_RUNTIME_DIR`). */
  unset?: string[];
}

/**
 * `deno run --allow-read --allow-write --allow-env --allow-sys app/cli.ts <args>` (what `deno task`
 * grants the commands that are not launched), its output decoded.
 */
export async function cli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const perms = ["--allow-read", "--allow-write", "--allow-env", "--allow-sys"];
  if (options.allowRun) perms.push("--allow-run");
  const unset = options.unset ?? [];
  const env = { NO_COLOR: "1", ...options.env };
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...perms, CLI, ...args],
    cwd: options.cwd ?? ROOT,
    stdout: "piped",
    stderr: "piped",
    ...(unset.length
      ? {
        clearEnv: true,
        env: {
          ...Object.fromEntries(
            Object.entries(Deno.env.toObject()).filter(([k]) => !unset.includes(k)),
          ),
          ...env,
        },
      }
      : { env }),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** Run `fn` with a fresh temporary folder, removed afterwards. */
export async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
