/**
 * `sweep --slurm` on a real Slurm: a one-node cluster on this machine (`.ci/slurm-local.sh`, or
 * one already running that `sinfo` reaches) runs the generated array job of two tiny phantom
 * runs, submitted with `sbatch` from a folder that is not the repository; both runs finish, and a
 * second submission skips both. Skipped where Slurm is not installed, or where no cluster runs
 * and this process is not root (a private cluster's daemons run as root).
 */
import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLUSTER = join(ROOT, ".ci", "slurm-local.sh");
/** The longest one submission may take (both tasks, Slurm's scheduling included). */
const TIMEOUT_MS = 240_000;

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function sh(
  command: string,
  options: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("bash", {
    args: ["-c", command],
    cwd: options.cwd,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
    signal: options.signal,
  }).output();
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

async function installed(binary: string): Promise<boolean> {
  const r = await sh(`command -v ${binary} || test -x /usr/sbin/${binary}`);
  return r.code === 0;
}

/** Why the test cannot run here, or null. */
async function skipReason(): Promise<string | null> {
  for (const b of ["sbatch", "slurmctld", "slurmd", "munged"]) {
    if (!(await installed(b))) {
      return `${b} is not installed (apt-get install -y slurm-wlm munge)`;
    }
  }
  if ((await sh("id -u")).stdout.trim() !== "0" && !(await clusterRunning())) {
    return "no Slurm cluster is running, and starting one needs root";
  }
  return null;
}

/** Whether `sinfo` reaches a cluster with a usable node. */
async function clusterRunning(): Promise<boolean> {
  const r = await sh("sinfo -h -o %T");
  return r.code === 0 && /idle|mix|alloc/.test(r.stdout);
}

const reason = await skipReason();
if (reason) console.log(`slurm_test: skipped: ${reason}`);

/** A cluster to submit to: one already running, or a private one started here. */
async function cluster(
  dir: string,
): Promise<{ env: Record<string, string>; stop(): Promise<void> }> {
  if (await clusterRunning()) return { env: {}, stop: () => Promise.resolve() };
  const started = await sh(`${CLUSTER} start ${dir}`);
  if (started.code !== 0) {
    throw new Error(`could not start a one-node Slurm:\n${started.stdout}\n${started.stderr}`);
  }
  const conf = /^SLURM_CONF=(.*)$/m.exec(started.stdout)![1];
  return {
    env: { SLURM_CONF: conf },
    stop: async () => {
      const r = await sh(`${CLUSTER} stop ${dir}`);
      assert.equal(r.code, 0, r.stderr);
    },
  };
}

/** `sbatch --wait` the script from `cwd`; returns the job id and the tasks' logs. */
async function submit(
  script: string,
  cwd: string,
  env: Record<string, string>,
): Promise<{ job: string; logs: string[] }> {
  const signal = AbortSignal.timeout(TIMEOUT_MS);
  const r = await sh(`sbatch --parsable --wait ${script}`, { cwd, env, signal }).catch(
    async (error) => {
      await sh("scancel --name=missl-test", { env });
      throw new Error(`sbatch did not finish within ${TIMEOUT_MS / 1000} s: ${error}`);
    },
  );
  const job = r.stdout.trim().split(";")[0];
  const logs: string[] = [];
  for (const task of [0, 1]) {
    const file = join(cwd, `slurm-${job}_${task}.out`);
    logs.push(await Deno.readTextFile(file).catch(() => `(no ${file})`));
  }
  assert.equal(r.code, 0, `sbatch --wait: ${r.stderr}\n${logs.join("\n----\n")}`);
  return { job, logs };
}

Deno.test({
  name:
    "sweep --slurm: a real one-node Slurm runs the array job, and a second submission skips both runs",
  ignore: reason !== null,
  async fn() {
    const dir = await Deno.makeTempDir();
    let stop = () => Promise.resolve();
    try {
      const { env, stop: stopCluster } = await cluster(join(dir, "slurm"));
      stop = stopCluster;
      await Deno.writeTextFile(
        join(dir, "tiny.yaml"),
        `name: tiny
method: partial
backend: wasm
dataset: { type: phantom, patients: 4, slicesPerPatient: 2, size: 32, split: { labeled: 1, unlabeled: 1, validation: 2 } }
model: { type: unet, base: 4, depth: 3 }
trainer: { iterations: 3, labeledBatch: 2, unlabeledBatch: 2 }
`,
      );
      // the script is written from the repository, as a user does; relative paths in it
      // must not depend on where it is submitted from
      const sweep = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "--allow-write",
          "--allow-env",
          join(ROOT, "app", "cli.ts"),
          "sweep",
          join(dir, "tiny.yaml"),
          "--seeds",
          "1,2",
          "--runs",
          join(dir, "runs"),
          "--slurm",
          "--job-name",
          "missl-test",
          "--out",
          join(dir, "job.sbatch"),
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(sweep.code, 0, text(sweep.stderr));
      const submitDir = join(dir, "submit");
      await Deno.mkdir(submitDir);
      const first = await submit(join(dir, "job.sbatch"), submitDir, env);
      const summaries: number[] = [];
      for (const seed of [1, 2]) {
        const file = join(dir, "runs", "tiny", `seed${seed}`, "summary.json");
        const summary = JSON.parse(await Deno.readTextFile(file));
        assert.equal(summary.seed, seed);
        assert.equal(summary.iterations, 3);
        summaries.push((await Deno.stat(file)).mtime!.getTime());
      }
      for (const log of first.logs) {
        assert.match(log, /permissions of this run \(deno task run\)/);
        assert.doesNotMatch(log, /not granted|NotCapable|error:/);
      }
      const second = await submit(join(dir, "job.sbatch"), submitDir, env);
      for (const [task, log] of second.logs.entries()) {
        assert.match(log, /is finished \(summary\.json exists\); nothing to do/, `task ${task}`);
      }
      for (const [i, seed] of [1, 2].entries()) {
        const file = join(dir, "runs", "tiny", `seed${seed}`, "summary.json");
        assert.equal((await Deno.stat(file)).mtime!.getTime(), summaries[i], "not rewritten");
      }
    } finally {
      await stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
