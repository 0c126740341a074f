/**
 * The Ours (KL) training step of the benchmark with the 3x3 convolutions as Winograd F(2x2, 3x3)
 * and as the direct GEMM kernel, alternating step by step in one process, by the calling
 * thread's CPU time (`/proc/self/task/<pid>/schedstat`: robust to other processes on the
 * machine): the minimum and the median per kernel.
 *
 * ```sh
 * deno run -A bench/winograd_step.ts [--size 128] [--base 16] [--steps 12] [--threads 1]
 *   [--against 2]
 * ```
 *
 * @module
 */
import { benchOursKlStep } from "../app/bench.ts";
import { setWinogradMode, setWinogradTile } from "../runtime/kernels/wasm_conv.ts";

const args = Object.fromEntries(
  Deno.args.join(" ").split("--").filter((s) => s.trim()).map((s) => {
    const [k, v] = s.trim().split(/\s+/);
    return [k, Number(v)];
  }),
);

function threadMs(): number {
  const text = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/schedstat`);
  return Number(text.split(" ")[0]) / 1e6;
}

const { Trainer } = await import("../core/trainer.ts");
const step = Trainer.prototype.step;
const warmup = 2;
let calls = 0;
const times: Record<string, number[]> = { direct: [], winograd: [] };
Trainer.prototype.step = async function (this: typeof Trainer.prototype) {
  calls++;
  const mode = calls % 2 === 0 ? "winograd" : "direct";
  // --against 2: the baseline is Winograd F(2x2, 3x3) everywhere instead of the direct kernel
  if (args.against === 2) {
    setWinogradMode("auto");
    setWinogradTile(mode === "winograd" ? 0 : 2);
  } else setWinogradMode(mode === "winograd" ? "auto" : "off");
  const t = threadMs();
  const out = await step.call(this);
  if (calls > warmup) times[mode].push(threadMs() - t);
  return out;
};
await benchOursKlStep({ ...args, steps: args.steps ?? 12, warmup });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [mode, t] of Object.entries(times)) {
  console.log(
    `${mode}: ${t.length} steps, thread CPU ms min ${Math.min(...t).toFixed(0)} median ${
      median(t).toFixed(0)
    }`,
  );
}
Deno.exit(0);
