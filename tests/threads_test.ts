/**
 * `threads: 2` never hangs (issue 15). The kernel pool's calling thread once waited for its
 * helper with `Atomics.wait(ctrl, done, ctrl[done])`, re-reading the done counter for the value
 * to wait on after checking it: when the helper finished between the check and the re-read, the
 * caller slept on a counter that had already moved, and no wake-up ever came (a real ACDC
 * Ours (KL) run stopped at iteration 3; a reproduction stopped at iteration 6 with the helper's
 * control block reading job 419, done 419 and the caller asleep on "done"). Each check runs in a
 * subprocess with a deadline on its progress lines, so that a hang fails the test instead of
 * hanging the suite.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * Run `deno run <script> <args>` and collect its standard output lines; kill it and fail when
 * no line came for `stallMs` (the first line may take `firstMs`: start-up and data loading).
 */
async function runWithDeadline(
  script: string,
  args: string[],
  o: { stallMs: number; firstMs: number },
): Promise<string[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", script, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let last = performance.now();
  let hung = false;
  const timer = setInterval(() => {
    const limit = lines.length === 0 ? o.firstMs : o.stallMs;
    if (performance.now() - last > limit) {
      hung = true;
      clearInterval(timer);
      child.kill("SIGKILL");
    }
  }, 250);
  const stderr = new Response(child.stderr).text();
  let pending = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    const parts = pending.split("\n");
    pending = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      last = performance.now();
    }
  }
  const status = await child.status;
  clearInterval(timer);
  const err = await stderr;
  assert.ok(
    !hung,
    `${script} ${args.join(" ")} hung: no progress for ${
      (lines.length === 0 ? o.firstMs : o.stallMs) / 1000
    } s after "${lines.at(-1) ?? "(start)"}"`,
  );
  assert.ok(status.success, `${script} failed (exit ${status.code}):\n${err}`);
  return lines;
}

Deno.test("threads 2: the kernel pool loses no wake-up (80,000 parallel calls, two processes)", async () => {
  // Parts that end at nearly the same time on both threads, in two processes at once (4 busy
  // threads on the machine): the timing of the lost wake-up.
  const runs = await Promise.all(
    [0, 1].map(() =>
      runWithDeadline("tests/_pool_race.ts", ["40000"], { stallMs: 20_000, firstMs: 60_000 })
    ),
  );
  for (const lines of runs) assert.equal(lines.at(-1), "done");
});

Deno.test("threads 2: a real-shaped Ours (KL) workload trains 12 steps without a hang, and shutdownBackend lets it exit", async () => {
  const lines = await runWithDeadline("tests/_threads_workload.ts", ["12"], {
    stallMs: 60_000,
    firstMs: 180_000,
  });
  console.log(`threads_test: ${lines[0]}`);
  // The helper worker took part (otherwise nothing threaded was tested).
  assert.match(lines[0], /helpers 1$/);
  assert.equal(lines.filter((l) => l.startsWith("step ")).length, 12);
  const done = lines.indexOf("done");
  assert.match(lines[done - 1], /^step 12 .* helpers 1$/);
  // The kernel pool's helper and the threaded build's pthreads were ended (else the process,
  // which does not call Deno.exit, would not have exited: runWithDeadline fails on that), and the
  // removed backend refuses to start again.
  assert.match(lines[done + 1], /^ended ([2-9]|\d\d+)$/);
  assert.match(
    lines[done + 2],
    /^initBackend after shutdownBackend: The threaded wasm backend was shut down/,
  );
});

Deno.test("threads 2: batch norm, Multiply, BatchMatMul, UnsortedSegmentSum, row copies and the losses' element-wise kernels split between the threads match cpu", async () => {
  const lines = await runWithDeadline("tests/_threaded_kernels.ts", [], {
    stallMs: 120_000,
    firstMs: 180_000,
  });
  assert.match(
    lines.at(-1) ?? "",
    /^done \(the helper ran [1-9]\d* of \d+ shared parts\)$/,
    lines.join("\n"),
  );
});
