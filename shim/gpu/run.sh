#!/usr/bin/env bash
# Builds the shim (gcc) and the CUDA test programs (nvcc, sm_90) and runs them on the GPU machine.
# Usage: shim/gpu/run.sh OUTDIR   -> OUTDIR/shim-integrity-*.json, shim-bandwidth-*.json, machine.json, logs
set -uo pipefail
out=${1:?usage: shim/gpu/run.sh OUTDIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
NVCC=${NVCC:-nvcc}
command -v "$NVCC" >/dev/null || NVCC=/usr/local/cuda/bin/nvcc

make -s -C "$root/shim" BUILD="$build" >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
shim=$build/libspillway_shim.so
inc=(-I"$root/shim/include")
# Dynamic runtime (the shim's cudaMalloc hooks bind to libcudart.so.13) and static runtime (only the
# dlsym / cuGetProcAddress interposition can see its driver calls): both must work.
"$NVCC" -O2 -arch=sm_90 -cudart shared "${inc[@]}" -o "$build/integrity-shared" "$here/integrity.cu" -ldl >>"$out/build.log" 2>&1 &&
"$NVCC" -O2 -arch=sm_90 -cudart static "${inc[@]}" -o "$build/integrity-static" "$here/integrity.cu" -ldl >>"$out/build.log" 2>&1 &&
"$NVCC" -O2 -arch=sm_90 -cudart shared "${inc[@]}" -o "$build/bandwidth" "$here/bandwidth.cu" -ldl >>"$out/build.log" 2>&1 ||
  { cat "$out/build.log"; exit 1; }

{
  printf '{"date":"%s","host":"%s","kernel":"%s",' "$(date -u +%FT%TZ)" "$(hostname)" "$(uname -r)"
  printf '"cpu":"%s","cpus":%s,"memTotalKiB":%s,' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
    "$(nproc)" "$(awk '/MemTotal/{print $2}' /proc/meminfo)"
  printf '"gpu":"%s"}\n' "$(nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader 2>/dev/null | head -1)"
} >"$out/machine.json"

budget=${SHIM_GPU_BUDGET:-4G}
status=0
for v in shared static; do
  SPILLWAY_VRAM_BUDGET=$budget SPILLWAY_LOG=debug LD_PRELOAD=$shim timeout 150 "$build/integrity-$v" \
    >"$out/shim-integrity-$v.json" 2>"$out/shim-integrity-$v.log" || status=1
done
bytes=${SHIM_GPU_BW_BYTES:-4294967296}
for backing in vmm mapped; do
  SPILLWAY_BACKING=$backing SPILLWAY_PLACEMENT_RULES="index=0 host;index=1 head=$((bytes / 2))" SPILLWAY_LOG=info \
    LD_PRELOAD=$shim timeout 90 "$build/bandwidth" "$bytes" >"$out/shim-bandwidth-$backing.json" 2>"$out/shim-bandwidth-$backing.log" || status=1
done
# PyTorch (its own libcudart.so.13 from the wheel, dynamic): memory it sees, a tensor over the budget.
if python3 -c "import torch" 2>/dev/null; then
  SPILLWAY_VRAM_BUDGET=${SHIM_TORCH_BUDGET:-2G} SPILLWAY_SHIM_LIB=$shim SPILLWAY_LOG=info LD_PRELOAD=$shim \
    timeout 150 python3 "$here/torch_check.py" >"$out/shim-torch.json" 2>"$out/shim-torch.log" || status=1
  # The stream-ordered allocator backend: cudaMallocAsync / cudaFreeAsync through the shim.
  PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync SPILLWAY_VRAM_BUDGET=${SHIM_TORCH_BUDGET:-2G} SPILLWAY_SHIM_LIB=$shim \
    SPILLWAY_LOG=info LD_PRELOAD=$shim timeout 150 python3 "$here/torch_check.py" >"$out/shim-torch-async.json" \
    2>"$out/shim-torch-async.log" || status=1
fi
# NVML as nvidia-smi reads it, without and with the shim (report = VRAM + host limit).
if command -v nvidia-smi >/dev/null; then
  q="--query-gpu=memory.total,memory.used,memory.free --format=csv,noheader,nounits"
  printf '{"test":"nvml","hostLimitMiB":10240,"plain":"%s","shim":"%s"}\n' "$(nvidia-smi $q | head -1)" \
    "$(SPILLWAY_HOST_LIMIT=10G LD_PRELOAD=$shim nvidia-smi $q | head -1)" >"$out/shim-nvml.json"
fi
cat "$out"/*.json
exit $status
