#!/usr/bin/env bash
# The GPU benchmark: the Ours (KL) training step on the `webgpu` backend against the PyTorch peer
# on CUDA, on the same GPU, on a bare Linux GPU machine that can fetch nothing.
#
#   bash bench/gpu.sh pack   # where the npm registry (and apt) are reachable: writes .gpu/
#   bash bench/gpu.sh run    # on the GPU machine, in the repository root, with .gpu/ beside it
#
# `pack` puts in .gpu/ (about 40 MB; the repository plus .gpu/ must travel, 64 MiB at most):
#   deno.xz      the Deno binary running here (2.9.6), xz-compressed (96 MB -> ~30 MB)
#   npm.tar.xz   a Deno npm cache holding exactly the packages the bench imports, the webgpu
#                backend included (source maps, minified and browser bundles, types pruned)
#   deno.lock    deno.lock plus tfjs-backend-webgpu (the project's lockfile leaves it out)
#   lib/         the Vulkan loader (libvulkan.so.1) and libglvnd's GLX/EGL dispatch libraries
#                from Debian packages, used only where the machine has none
#   peer.py      the PyTorch peer (../shared/peers/ours_kl_step_torch.py, or $PEER)
# (`deno compile` would make one executable, but it downloads its runtime from dl.deno.land,
# which is not reachable from here.)
#
# `run` unpacks Deno and the cache into a temporary folder, makes the Vulkan loader and the
# NVIDIA Vulkan driver findable where they are not (VK_DRIVER_FILES), and prints one JSON line
# per measurement on standard output (notes go to standard error):
#   the adapter; `deno task bench --backend webgpu` and the peer with `--device cuda` at
#   --size 256 --labeled 4 --unlabeled 8 --base 16 --depth 5 and at the CPU benchmark's
#   --size 128 --labeled 4 --unlabeled 4 --base 16 --depth 5; wasm on one CPU thread at both
#   (the >= 20x target); the webgpu step's per-kernel GPU profile (inside its JSON line, at 256);
#   tests/webgpu_test.ts's numbers on this GPU (kernels against cpu, losses against wasm) and the
#   other webgpu checks (batch norm, Adam, convolutions, MI, losses, readback); and a last line of
#   ratios (webgpu's step_ms_mean: queued steps and one wait for the GPU) with the paper's run
#   (30,000 iterations at 256 px) projected from the webgpu step. GPU_BENCH_QUICK=1 runs tiny sizes (to test the script itself).
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=${GPU_DIR:-.gpu}
DENO_VERSION=2.9.6
WEBGPU_PKG="npm:@tensorflow/tfjs-backend-webgpu@4.22.0"

note() { echo "gpu.sh: $*" >&2; }

pack() {
  command -v deno >/dev/null || { note "deno not found"; exit 1; }
  deno --version | head -1 | grep -q "deno $DENO_VERSION" ||
    note "warning: this deno is not $DENO_VERSION"
  rm -rf "$GPU_DIR" && mkdir -p "$GPU_DIR/lib"
  local tmp
  tmp=$(mktemp -d)
  note "compressing $(command -v deno) (xz -6, about two minutes)"
  xz -6 -T0 -c "$(readlink -f "$(command -v deno)")" >"$GPU_DIR/deno.xz"
  note "filling a fresh npm cache from the registry"
  cp deno.lock "$GPU_DIR/deno.lock"
  echo "import \"$WEBGPU_PKG\";" >"$tmp/webgpu_pkg.ts"
  DENO_DIR="$tmp/cache" deno cache --lock="$GPU_DIR/deno.lock" app/cli.ts >/dev/null 2>&1 &&
    DENO_DIR="$tmp/cache" deno cache --lock="$GPU_DIR/deno.lock" "$tmp/webgpu_pkg.ts" \
      >/dev/null 2>&1 || { note "deno cache failed"; exit 1; }
  local npm="$tmp/cache/npm/registry.npmjs.org"
  find "$npm" \( -name '*.map' -o -name '*.min.js' -o -name '*.es2017.js' -o -name '*.fesm.js' \
    -o -name '*.d.ts' -o -name '*.md' -o -name '*.html' -o -name '*.tsbuildinfo' \) -delete
  find "$npm" -type d -name miniprogram -prune -exec rm -rf {} +
  tar -C "$tmp/cache" -cf - npm | xz -6 -T0 >"$GPU_DIR/npm.tar.xz"
  if command -v apt-get >/dev/null; then
    (cd "$tmp" && apt-get download libvulkan1 libglvnd0 libglx0 libegl1 >/dev/null 2>&1) ||
      note "apt-get download failed: no Vulkan loader packed (the machine must have one)"
    for deb in "$tmp"/*.deb; do
      [ -f "$deb" ] || continue
      dpkg-deb -x "$deb" "$tmp/root"
    done
    # plain files named by their sonames (a link may not travel)
    for so in libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0 libEGL.so.1; do
      local f
      f=$(find "$tmp/root" -name "$so" | head -1)
      [ -n "$f" ] && cp -L "$f" "$GPU_DIR/lib/$so"
    done
  else
    note "no apt-get: no Vulkan loader packed (the machine must have one)"
  fi
  local peer=${PEER:-../shared/peers/ours_kl_step_torch.py}
  if [ -f "$peer" ]; then cp "$peer" "$GPU_DIR/peer.py"; else note "no PyTorch peer at $peer"; fi
  rm -rf "$tmp"
  du -sh "$GPU_DIR"/* >&2
  local total repo
  total=$(du -sm "$GPU_DIR" | cut -f1)
  repo=$(git ls-files -z | xargs -0 du -cm 2>/dev/null | tail -1 | cut -f1)
  note "$GPU_DIR is ${total} MiB, the tracked repository ${repo} MiB (limit 64 MiB together)"
}

# Make libvulkan.so.1 and an NVIDIA Vulkan driver findable.
setup_vulkan() {
  local have
  have=$({ ldconfig -p || /sbin/ldconfig -p || /usr/sbin/ldconfig -p; } 2>/dev/null)
  mkdir -p "$WORK/ld"
  for lib in "$GPU_DIR"/lib/*.so.*; do
    [ -e "$lib" ] || continue
    local soname
    soname=$(basename "$lib" | sed -E 's/(\.so\.[0-9]+).*/\1/')
    if ! grep -q "$soname " <<<"$have"; then ln -sf "$(readlink -f "$lib")" "$WORK/ld/$soname"; fi
  done
  if [ -n "$(ls -A "$WORK/ld")" ]; then
    note "using the packed $(ls "$WORK/ld" | tr '\n' ' ')"
    export LD_LIBRARY_PATH="$WORK/ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  local icds=""
  for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -d "$d" ] && icds="$icds$(ls "$d"/*.json 2>/dev/null | tr '\n' ' ')"
  done
  if ! grep -qi nvidia <<<"$icds"; then
    local nv
    nv=$(ls /usr/local/nvidia/share/vulkan/icd.d/*.json /usr/local/nvidia/etc/vulkan/icd.d/*.json \
      /usr/lib/x86_64-linux-gnu/nvidia/*/nvidia_icd.json 2>/dev/null | head -1)
    if [ -z "$nv" ] && { grep -q libGLX_nvidia.so.0 <<<"$have" ||
      ls /usr/local/nvidia/lib64/libGLX_nvidia.so.0 >/dev/null 2>&1; }; then
      nv="$WORK/nvidia_icd.json"
      echo '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3.0"}}' >"$nv"
      [ -d /usr/local/nvidia/lib64 ] &&
        export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/nvidia/lib64"
    fi
    if [ -n "$nv" ]; then
      note "Vulkan driver: $nv"
      export VK_DRIVER_FILES="$nv" VK_ICD_FILENAMES="$nv"
    else
      note "no NVIDIA Vulkan driver found (ICDs: ${icds:-none})"
    fi
  fi
}

run() {
  [ -f "$GPU_DIR/npm.tar.xz" ] || { note "no $GPU_DIR/npm.tar.xz: run 'bash bench/gpu.sh pack' first"; exit 1; }
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$WORK/xdg} NO_COLOR=1
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  local deno=deno
  if ! deno --version 2>/dev/null | head -1 | grep -q "deno $DENO_VERSION"; then
    xz -dc "$GPU_DIR/deno.xz" >"$WORK/deno" && chmod +x "$WORK/deno" && deno="$WORK/deno"
  fi
  export DENO_DIR="$WORK/cache" DENO_NO_UPDATE_CHECK=1
  mkdir -p "$DENO_DIR" && tar -C "$DENO_DIR" -xJf "$GPU_DIR/npm.tar.xz"
  setup_vulkan
  command -v nvidia-smi >/dev/null &&
    note "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
  local d=(--cached-only --lock="$GPU_DIR/deno.lock" --unstable-webgpu)
  "$deno" eval "${d[@]}" '
    import { probeAdapter, describeAdapter } from "./runtime/webgpu.ts";
    const a = await probeAdapter();
    console.log(JSON.stringify({ adapter: a ? describeAdapter(a) : null, software: a?.software ?? null }));'
  local bench=("$deno" run "${d[@]}" --allow-read --allow-env --allow-sys app/cli.ts bench)
  local big=(--size 256 --labeled 4 --unlabeled 8 --base 16 --depth 5)
  local small=(--size 128 --labeled 4 --unlabeled 4 --base 16 --depth 5)
  if [ "${GPU_BENCH_QUICK:-0}" = 1 ]; then
    big=(--size 64 --labeled 2 --unlabeled 2 --base 4 --depth 3)
    small=(--size 32 --labeled 2 --unlabeled 2 --base 4 --depth 3)
  fi
  local py=${PYTHON:-python3}
  local lines="$WORK/lines"
  # the whole run, unpacking included, stays within GPU_BENCH_BUDGET seconds (default 8 minutes):
  # each measurement gets its own limit or what is left, whichever is less, and is skipped with
  # under 5 s left (SECONDS counts from the script's start)
  local deadline=${GPU_BENCH_BUDGET:-480}
  measure() { # name, timeout (s), command...
    local name=$1 limit=$2
    shift 2
    local left=$((deadline - SECONDS))
    if [ "$left" -lt 5 ]; then
      echo "{\"run\":\"$name\",\"error\":\"skipped: the ${GPU_BENCH_BUDGET:-480} s budget is spent\"}" |
        tee -a "$lines"
      return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    note "$name"
    local out
    if out=$(timeout "$limit" "$@" | tail -1) && [ -n "$out" ]; then
      echo "{\"run\":\"$name\",\"result\":$out}" | tee -a "$lines"
    else
      echo "{\"run\":\"$name\",\"error\":\"failed or timed out (${limit} s)\"}" | tee -a "$lines"
    fi
  }
  # Dispatch overhead: 2,000 small element-wise kernels, then one read (ms per kernel).
  measure webgpu-dispatch 60 "$deno" eval "${d[@]}" '
    import { tf } from "./deps.ts";
    import { initBackend } from "./runtime/backend.ts";
    await initBackend("webgpu");
    const run = async (n) => {
      let x = tf.ones([1024]);
      const t = performance.now();
      for (let i = 0; i < n; i++) { const y = tf.add(x, 1); x.dispose(); x = y; }
      await x.data();
      x.dispose();
      return (performance.now() - t) / n;
    };
    await run(200);
    console.log(JSON.stringify({ ms_per_kernel: Math.round((await run(2000)) * 1000) / 1000 }));'
  # First one profiled step at each size (quick, and tells where the time goes when it is slow),
  # then the timed steps; each step's time goes to standard error as it ends.
  measure webgpu-128-profile 90 "${bench[@]}" --backend webgpu "${small[@]}" --steps 1 --warmup 1 \
    --profile --progress
  measure torch-cuda-256 90 "$py" "$GPU_DIR/peer.py" --device cuda "${big[@]}" --steps 5
  measure torch-cuda-128 90 "$py" "$GPU_DIR/peer.py" --device cuda "${small[@]}" --steps 5
  measure webgpu-256 150 "${bench[@]}" --backend webgpu "${big[@]}" --steps 3 --warmup 1 --profile \
    --progress
  measure webgpu-128 90 "${bench[@]}" --backend webgpu "${small[@]}" --steps 5 --warmup 1 --progress
  measure wasm-1thread-128 60 "${bench[@]}" --backend wasm --threads 1 "${small[@]}" --steps 2 --warmup 1
  measure wasm-1thread-256 90 "${bench[@]}" --backend wasm --threads 1 "${big[@]}" --steps 1 --warmup 1
  # correctness on this GPU: tests/webgpu_test.ts's numbers (kernels vs cpu, losses vs wasm)
  measure checks 120 "$deno" run "${d[@]}" --allow-read --allow-write --allow-env --allow-sys \
    tests/_webgpu_checks.ts
  # the fused batch norm, Adam, convolutions, MI, losses and the deferred readback against cpu /
  # wasm on this GPU
  for k in bn adam conv mi loss readback; do
    measure "checks-$k" 45 "$deno" run "${d[@]}" --allow-read --allow-write --allow-env \
      --allow-sys "tests/_webgpu_${k}_checks.ts"
  done
  # tfjs's own kernels on the same step, for the per-kernel comparison
  measure webgpu-128-builtin-profile 60 "${bench[@]}" --backend webgpu --kernels builtin \
    "${small[@]}" --steps 1 --warmup 1 --profile --progress
  "$deno" eval --cached-only --lock="$GPU_DIR/deno.lock" '
    const rows = Deno.readTextFileSync(Deno.args[0]).trim().split("\n").map((l) => JSON.parse(l));
    // step_ms_mean: the timed steps and one wait for the GPU (webgpu queues steps without
    // waiting, trainer.readback: log, so its per-step median is host time only)
    const ms = (n) => {
      const r = rows.find((r) => r.run === n)?.result;
      return r?.step_ms_mean ?? r?.step_ms_median ?? r?.step_ms ?? null;
    };
    const ratio = (a, b) => (ms(a) && ms(b) ? Math.round((ms(a) / ms(b)) * 100) / 100 : null);
    console.log(JSON.stringify({
      webgpu_over_torch_cuda_256: ratio("webgpu-256", "torch-cuda-256"),
      webgpu_over_torch_cuda_128: ratio("webgpu-128", "torch-cuda-128"),
      wasm_1thread_over_webgpu_256: ratio("wasm-1thread-256", "webgpu-256"),
      wasm_1thread_over_webgpu_128: ratio("wasm-1thread-128", "webgpu-128"),
      // the paper'"'"'s protocol (recipes/acdc/ours-kl.yaml: 256 px, 4 + 8, U-Net 16x5, 30,000
      // iterations) at this step time, data loading and validation left out
      paper_run_hours_projected: ms("webgpu-256")
        ? Math.round((30000 * ms("webgpu-256")) / 3.6e6 * 10) / 10
        : null,
    }));' "$lines"
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *)
    echo "usage: bash bench/gpu.sh pack | run   (see the comments at the top)" >&2
    exit 2
    ;;
esac
