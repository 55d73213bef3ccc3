// Zero-copy read bandwidth through the spillway shim on a real GPU. Run under LD_PRELOAD with
// SPILLWAY_PLACEMENT_RULES="index=0 host;index=1 head=<half>": the first cudaMalloc is placed wholly
// in host memory, the second is split half VRAM, half host. A kernel reads each; the reference points
// are pinned cudaMemcpy host-to-device, a kernel reading cudaHostAlloc-mapped memory, and VRAM.
// Prints one JSON object. Usage: bandwidth [bytes] (default 4 GiB).
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "spillway_stats.h"

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      printf("{\"test\":\"bandwidth\",\"error\":\"%s: %s\",\"line\":%d}\n", #x, cudaGetErrorString(e_), __LINE__); \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

template <int U>
__global__ void readk(const uint4 *__restrict__ p, size_t n, unsigned long long *out) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (; i + (U - 1) * stride < n; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) v[u] = p[i + u * stride]; // U loads in flight per thread
#pragma unroll
    for (int u = 0; u < U; u++) acc.x ^= v[u].x, acc.y ^= v[u].y, acc.z ^= v[u].z, acc.w ^= v[u].w;
  }
  for (; i < n; i += stride) {
    uint4 a = p[i];
    acc.x ^= a.x, acc.y ^= a.y, acc.z ^= a.z, acc.w ^= a.w;
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9e3779b9u) atomicAdd(out, 1ull); // keeps the loads
}

__global__ void filk(uint4 *p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = make_uint4((unsigned)i, (unsigned)(i >> 32), 7u, 9u);
}

static int sms;
static unsigned long long *sink;

struct cfg { int grid_per_sm, block, unroll; };
static const cfg CFGS[] = {{8, 512, 4}, {4, 512, 4}, {16, 512, 4}, {32, 256, 4}, {8, 512, 8}, {16, 256, 8}, {2, 1024, 8}};
static const int NCFG = sizeof CFGS / sizeof CFGS[0];

static void launch(const cfg &c, const void *p, size_t bytes) {
  if (c.unroll == 8) readk<8><<<sms * c.grid_per_sm, c.block>>>((const uint4 *)p, bytes / 16, sink);
  else readk<4><<<sms * c.grid_per_sm, c.block>>>((const uint4 *)p, bytes / 16, sink);
}

// Best and median GB/s (1e9 bytes/s) of reps timed runs of `op`, after one untimed run.
template <class Op> static void time_op(Op op, size_t bytes, int reps, double *best, double *median) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  op();
  CK(cudaDeviceSynchronize());
  std::vector<double> v;
  for (int r = 0; r < reps; r++) {
    CK(cudaEventRecord(a));
    op();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    v.push_back(bytes / (ms * 1e6));
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(v.begin(), v.end());
  *best = v.back(), *median = v[v.size() / 2];
}

// A kernel configuration reading `bytes` at `p`.
static void time_read(const cfg &c, const void *p, size_t bytes, int reps, double *best, double *median) {
  time_op([&] { launch(c, p, bytes); }, bytes, reps, best, median);
}

// Pinned host-to-device copy engine.
static void time_h2d(void *dst, const void *src, size_t bytes, int reps, double *best, double *median) {
  time_op([&] { CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, 0)); }, bytes, reps, best, median);
}

int main(int argc, char **argv) {
  size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : (4ull << 30);
  const int reps = 7;
  CK(cudaFree(0));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  int (*stats)(void *, size_t) = (int (*)(void *, size_t))dlsym(RTLD_DEFAULT, "spillway_shim_stats");
  struct spillway_stats s0, s1, s2;
  memset(&s0, 0, sizeof s0), memset(&s1, 0, sizeof s1), memset(&s2, 0, sizeof s2);
  if (stats) stats(&s0, sizeof s0);

  void *spilled, *split;
  CK(cudaMalloc(&spilled, bytes)); // rule index=0: host
  if (stats) stats(&s1, sizeof s1);
  CK(cudaMalloc(&split, bytes)); // rule index=1: half VRAM, half host
  if (stats) stats(&s2, sizeof s2);
  CK(cudaMalloc(&sink, sizeof *sink));
  void *vram;
  CK(cudaMalloc(&vram, bytes));
  filk<<<sms * 8, 512>>>((uint4 *)spilled, bytes / 16);
  filk<<<sms * 8, 512>>>((uint4 *)split, bytes / 16);
  filk<<<sms * 8, 512>>>((uint4 *)vram, bytes / 16);
  CK(cudaDeviceSynchronize());

  void *pinned, *mapped, *mapped_dev;
  CK(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault));
  CK(cudaHostAlloc(&mapped, bytes, cudaHostAllocMapped));
  CK(cudaHostGetDevicePointer(&mapped_dev, mapped, 0));
  memset(pinned, 1, bytes);
  memset(mapped, 2, bytes);

  double h2d_b, h2d_m, sp_b = 0, sp_m = 0, mp_b = 0, mp_m = 0, vr_b, vr_m, sl_b, sl_m;
  time_h2d(vram, pinned, bytes, reps, &h2d_b, &h2d_m);
  // The same kernel configurations on spilled and on cudaHostAlloc-mapped memory; the best of each.
  char sweep[4096];
  int off = 0, best_sp = 0, best_mp = 0;
  for (int k = 0; k < NCFG; k++) {
    double b1, m1, b2, m2;
    time_read(CFGS[k], spilled, bytes, reps, &b1, &m1);
    time_read(CFGS[k], mapped_dev, bytes, reps, &b2, &m2);
    if (m1 > sp_m) sp_b = b1, sp_m = m1, best_sp = k;
    if (m2 > mp_m) mp_b = b2, mp_m = m2, best_mp = k;
    off += snprintf(sweep + off, sizeof sweep - off, "%s{\"blocksPerSm\":%d,\"block\":%d,\"unroll\":%d,\"spilled\":%.2f,\"mapped\":%.2f}",
                    k ? "," : "", CFGS[k].grid_per_sm, CFGS[k].block, CFGS[k].unroll, m1, m2);
  }
  time_read(CFGS[best_sp], split, bytes, reps, &sl_b, &sl_m);
  time_read(CFGS[0], vram, bytes, reps, &vr_b, &vr_m);
  uint64_t spilled_host = s1.tiers[SPILLWAY_TIER_HOST_VMM].bytes + s1.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes -
                          s0.tiers[SPILLWAY_TIER_HOST_VMM].bytes - s0.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes;
  uint64_t split_host = s2.tiers[SPILLWAY_TIER_HOST_VMM].bytes + s2.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes -
                        s1.tiers[SPILLWAY_TIER_HOST_VMM].bytes - s1.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes;
  uint64_t split_vram = s2.tiers[SPILLWAY_TIER_VRAM].bytes - s1.tiers[SPILLWAY_TIER_VRAM].bytes;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("{\"test\":\"bandwidth\",\"gpu\":\"%s\",\"bytes\":%zu,\"reps\":%d,\"unit\":\"GB/s\","
         "\"pinnedMemcpyH2D\":{\"best\":%.2f,\"median\":%.2f},"
         "\"spilledKernelRead\":{\"best\":%.2f,\"median\":%.2f,\"hostBytes\":%llu},"
         "\"mappedKernelRead\":{\"best\":%.2f,\"median\":%.2f},"
         "\"splitKernelRead\":{\"best\":%.2f,\"median\":%.2f,\"vramBytes\":%llu,\"hostBytes\":%llu},"
         "\"vramKernelRead\":{\"best\":%.2f,\"median\":%.2f},"
         "\"ratioSpilledReadToPinnedMemcpy\":%.4f,\"ratioSpilledReadToMappedRead\":%.4f,\"shimLoaded\":%s,"
         "\"bestConfig\":{\"spilled\":%d,\"mapped\":%d},\"sweepMedians\":[%s]}\n",
         prop.name, bytes, reps, h2d_b, h2d_m, sp_b, sp_m, (unsigned long long)spilled_host, mp_b, mp_m, sl_b, sl_m,
         (unsigned long long)split_vram, (unsigned long long)split_host, vr_b, vr_m, sp_m / h2d_m, sp_m / mp_m,
         stats ? "true" : "false", best_sp, best_mp, sweep);
  CK(cudaFree(spilled));
  CK(cudaFree(split));
  CK(cudaFree(vram));
  CK(cudaFreeHost(pinned));
  CK(cudaFreeHost(mapped));
  return spilled_host == bytes ? 0 : 1;
}
