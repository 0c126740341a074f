/**
 * The WebGPU tests' shared runner: each `tests/webgpu*_test.ts` runs its `_webgpu*_checks.ts` once
 * in a child process with its own copy of deno.lock (importing tfjs-backend-webgpu here would add
 * it to the project's lockfile) and reads the JSON line it prints last; without WebGPU or an
 * adapter the tests are skipped with one line saying why.
 *
 * ```ts
 * const { checks, gpuTest } = await webgpuChecks<MyChecks>("_webgpu_my_checks.ts", "webgpu my");
 * gpuTest("matches cpu", async () => assert.ok((await checks()).ok));
 * ```
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { webgpuUnavailableReason } from "../runtime/webgpu.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** A checks script's result (run once, on first use) and `Deno.test` skipped without WebGPU. */
export interface WebgpuChecksRunner<T> {
  /** Why the tests are skipped, or null. */
  skip: string | null;
  /** The script's result (its last line, JSON), computed once. */
  checks: () => Promise<T>;
  /** `Deno.test` named `<prefix>: <name>`, ignored where `skip` is set. */
  gpuTest: (name: string, fn: () => Promise<void>) => void;
}

/**
 * The runner of `tests/<script>`; `prefix` names its tests, `what` its skip line
 * (`<what> tests skipped: <why>`; default `prefix`).
 */
export async function webgpuChecks<T>(
  script: string,
  prefix: string,
  what = prefix,
): Promise<WebgpuChecksRunner<T>> {
  const skip = await webgpuUnavailableReason();
  if (skip !== null) console.log(`${what} tests skipped: ${skip}`);
  let result: Promise<T> | undefined;
  const checks = () =>
    result ??= (async () => {
      const dir = await Deno.makeTempDir({ prefix: "missl-webgpu-" });
      try {
        const lock = join(dir, "deno.lock");
        await Deno.copyFile(join(ROOT, "deno.lock"), lock);
        const env: Record<string, string> = { NO_COLOR: "1" };
        // Mesa's window-system code complains on standard error without it (harmless)
        if (!Deno.env.get("XDG_RUNTIME_DIR")) env.XDG_RUNTIME_DIR = dir;
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--unstable-webgpu",
            `--lock=${lock}`,
            "--allow-read",
            "--allow-write",
            "--allow-env",
            "--allow-sys",
            join(ROOT, "tests", script),
          ],
          cwd: ROOT,
          env,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stdout = new TextDecoder().decode(out.stdout).trim();
        if (out.code !== 0 || !stdout) {
          throw new Error(
            `${script} failed (exit ${out.code}):\n${new TextDecoder().decode(out.stderr)}`,
          );
        }
        return JSON.parse(stdout.split("\n").pop()!) as T;
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    })();
  const gpuTest = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `${prefix}: ${name}`, ignore: skip !== null, fn });
  return { skip, checks, gpuTest };
}
