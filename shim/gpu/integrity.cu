// Data integrity through the spillway shim on a real GPU. Run under LD_PRELOAD with a VRAM budget B:
// allocates 2 x B with cudaMalloc (one allocation of B + 1/2 B that the shim splits VRAM head + host
// tail, then allocations that land wholly in host memory), fills every word with kernels, verifies
// every byte with kernels and again on the CPU through cudaMemcpy, then overwrites through
// cudaMemcpy and verifies with kernels. Also reports what driver lookups return (shim hook or not).
// Prints one JSON object. Usage: integrity [budget_bytes] (default: SPILLWAY_VRAM_BUDGET or 4 GiB).
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "spillway_stats.h"

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      printf("{\"passed\":false,\"error\":\"%s: %s\",\"line\":%d}\n", #x, cudaGetErrorString(e_), __LINE__); \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

__device__ __host__ static inline uint64_t pattern(uint64_t i, uint64_t seed) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 32);
}

__global__ void fill(uint64_t *p, uint64_t n, uint64_t base, uint64_t seed) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
    p[i] = pattern(base + i, seed);
}

__global__ void verify(const uint64_t *p, uint64_t n, uint64_t base, uint64_t seed, unsigned long long *bad) {
  unsigned long long local = 0;
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
    local += p[i] != pattern(base + i, seed);
  if (local) atomicAdd(bad, local);
}

static uint64_t parse_size(const char *s) {
  char *e;
  double v = strtod(s, &e);
  switch (*e) {
    case 'K': v *= 1024.0; break;
    case 'M': v *= 1048576.0; break;
    case 'G': v *= 1073741824.0; break;
  }
  return (uint64_t)v;
}

static bool is_hook(const char *name, void *fn) {
  void *shim = dlopen("libspillway_shim.so", RTLD_NOW | RTLD_NOLOAD);
  return shim && fn && dlsym(shim, name) == fn;
}

int main(int argc, char **argv) {
  const char *env = getenv("SPILLWAY_VRAM_BUDGET");
  uint64_t budget = argc > 1 ? parse_size(argv[1]) : env ? parse_size(env) : (4ull << 30);
  uint64_t target = 2 * budget;
  CK(cudaFree(0));
  size_t free0, total0;
  CK(cudaMemGetInfo(&free0, &total0));

  // The first allocation is bigger than the budget: split. The rest is over the budget: host.
  std::vector<uint64_t> sizes;
  sizes.push_back(budget + budget / 2);
  uint64_t rest = target - sizes[0];
  while (rest) {
    uint64_t s = rest < budget / 4 ? rest : budget / 4;
    sizes.push_back(s);
    rest -= s;
  }
  std::vector<uint64_t *> ptrs(sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) CK(cudaMalloc((void **)&ptrs[i], sizes[i]));

  unsigned long long *bad_d;
  CK(cudaMalloc((void **)&bad_d, sizeof *bad_d));
  CK(cudaMemset(bad_d, 0, sizeof *bad_d));
  const uint64_t seed = 0x5eed1234abcdull;
  for (size_t i = 0; i < sizes.size(); i++) fill<<<1024, 256>>>(ptrs[i], sizes[i] / 8, i << 40, seed);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  for (size_t i = 0; i < sizes.size(); i++) verify<<<1024, 256>>>(ptrs[i], sizes[i] / 8, i << 40, seed, bad_d);
  CK(cudaDeviceSynchronize());
  unsigned long long kernel_bad = 0;
  CK(cudaMemcpy(&kernel_bad, bad_d, sizeof kernel_bad, cudaMemcpyDeviceToHost));

  // Every byte again on the CPU, copied out in 256 MiB pieces.
  const uint64_t chunk = 256ull << 20;
  uint64_t *host;
  CK(cudaMallocHost((void **)&host, chunk));
  unsigned long long cpu_bad = 0;
  uint64_t cpu_checked = 0;
  for (size_t i = 0; i < sizes.size(); i++)
    for (uint64_t off = 0; off < sizes[i]; off += chunk) {
      uint64_t n = sizes[i] - off < chunk ? sizes[i] - off : chunk;
      CK(cudaMemcpy(host, (char *)ptrs[i] + off, n, cudaMemcpyDeviceToHost));
      for (uint64_t k = 0; k < n / 8; k++) cpu_bad += host[k] != pattern((i << 40) + off / 8 + k, seed);
      cpu_checked += n;
    }

  // Write through the copy engines, check with kernels.
  CK(cudaMemset(bad_d, 0, sizeof *bad_d));
  const uint64_t seed2 = 0xfeedfacecafebeefull;
  for (size_t i = 0; i < sizes.size(); i++)
    for (uint64_t off = 0; off < sizes[i]; off += chunk) {
      uint64_t n = sizes[i] - off < chunk ? sizes[i] - off : chunk;
      for (uint64_t k = 0; k < n / 8; k++) host[k] = pattern((i << 40) + off / 8 + k, seed2);
      CK(cudaMemcpy((char *)ptrs[i] + off, host, n, cudaMemcpyHostToDevice));
    }
  for (size_t i = 0; i < sizes.size(); i++) verify<<<1024, 256>>>(ptrs[i], sizes[i] / 8, i << 40, seed2, bad_d);
  CK(cudaDeviceSynchronize());
  unsigned long long copy_bad = 0;
  CK(cudaMemcpy(&copy_bad, bad_d, sizeof copy_bad, cudaMemcpyDeviceToHost));

  struct spillway_stats st;
  memset(&st, 0, sizeof st);
  int (*stats)(void *, size_t) = (int (*)(void *, size_t))dlsym(RTLD_DEFAULT, "spillway_shim_stats");
  if (stats) stats(&st, sizeof st);
  size_t free1, total1;
  CK(cudaMemGetInfo(&free1, &total1));

  // Lookups a runtime or a program could make.
  void *fn = NULL;
  cudaDriverEntryPointQueryResult q;
  CK(cudaGetDriverEntryPointByVersion("cuMemAlloc", &fn, 12000, cudaEnableDefault, &q));
  bool ep_hooked = is_hook("cuMemAlloc_v2", fn);
  void *cu = dlopen("libcuda.so.1", RTLD_NOW);
  void *gpa = cu ? dlsym(cu, "cuGetProcAddress_v2") : NULL;
  bool gpa_hooked = is_hook("cuGetProcAddress_v2", gpa);
  void *fn2 = NULL;
  if (gpa) ((CUresult(*)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *))gpa)("cuMemFree", &fn2, 13000, 0, NULL);
  bool gpa_free_hooked = is_hook("cuMemFree_v2", fn2);

  for (size_t i = 0; i < sizes.size(); i++) CK(cudaFree(ptrs[i]));
  struct spillway_stats after;
  memset(&after, 0, sizeof after);
  if (stats) stats(&after, sizeof after);
  CK(cudaFreeHost(host));
  CK(cudaFree(bad_d));

  bool passed = kernel_bad == 0 && cpu_bad == 0 && copy_bad == 0 && cpu_checked == target && stats &&
                st.tiers[SPILLWAY_TIER_VRAM].bytes + st.tiers[SPILLWAY_TIER_HOST_VMM].bytes +
                        st.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes + st.tiers[SPILLWAY_TIER_HOST_KMOD].bytes >= target &&
                after.tiers[SPILLWAY_TIER_HOST_VMM].bytes + after.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes == 0;
  int rtv = 0, drv = 0;
  cudaRuntimeGetVersion(&rtv);
  cudaDriverGetVersion(&drv);
  printf("{\"test\":\"integrity\",\"passed\":%s,\"runtimeVersion\":%d,\"driverVersion\":%d,\"budgetBytes\":%llu,"
         "\"allocatedBytes\":%llu,\"allocations\":%zu,\"kernelMismatchedWords\":%llu,\"cpuMismatchedWords\":%llu,"
         "\"cpuCheckedBytes\":%llu,\"copyWriteMismatchedWords\":%llu,"
         "\"shim\":{\"loaded\":%s,\"vramBytes\":%llu,\"hostVmmBytes\":%llu,\"hostMappedBytes\":%llu,\"hostKmodBytes\":%llu,"
         "\"allocs\":%llu,\"spills\":%llu,\"splits\":%llu,\"failures\":%llu,\"hostBytesAfterFree\":%llu},"
         "\"reported\":{\"beforeFree\":%zu,\"beforeTotal\":%zu,\"afterFree\":%zu,\"afterTotal\":%zu},"
         "\"lookups\":{\"entryPointCuMemAlloc\":%s,\"dlsymCuGetProcAddress\":%s,\"getProcAddressCuMemFree\":%s}}\n",
         passed ? "true" : "false", rtv, drv, (unsigned long long)budget, (unsigned long long)target, sizes.size(),
         kernel_bad, cpu_bad, (unsigned long long)cpu_checked, copy_bad, stats ? "true" : "false",
         (unsigned long long)st.tiers[SPILLWAY_TIER_VRAM].bytes, (unsigned long long)st.tiers[SPILLWAY_TIER_HOST_VMM].bytes,
         (unsigned long long)st.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes, (unsigned long long)st.tiers[SPILLWAY_TIER_HOST_KMOD].bytes,
         (unsigned long long)st.allocs, (unsigned long long)st.spills, (unsigned long long)st.splits,
         (unsigned long long)st.failures,
         (unsigned long long)(after.tiers[SPILLWAY_TIER_HOST_VMM].bytes + after.tiers[SPILLWAY_TIER_HOST_MAPPED].bytes),
         free0, total0, free1, total1, ep_hooked ? "true" : "false", gpa_hooked ? "true" : "false",
         gpa_free_hooked ? "true" : "false");
  return passed ? 0 : 1;
}
