/* Internal declarations shared by the shim's source files. */
#ifndef SPILLWAY_SHIM_H
#define SPILLWAY_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "spillway_cuda.h"
#include "spillway_stats.h"

#define SW_EXPORT __attribute__((visibility("default")))
#define SW_VERSION_MAJOR 0
#define SW_VERSION_MINOR 1
#define SW_VERSION_PATCH 0
#define SW_MAX_DEVICES 16
#define SW_GRANULE (2ull << 20) /* VMM split granularity: 2 MiB */

/* ---- configuration (config.c) ---- */
enum { SW_LOG_ERROR = 0, SW_LOG_WARN = 1, SW_LOG_INFO = 2, SW_LOG_DEBUG = 3 };
enum { SW_ACT_AUTO = 0, SW_ACT_VRAM, SW_ACT_HOST, SW_ACT_HEAD };

/* One placement rule: the first rule whose matchers all hold decides. */
struct sw_rule {
  int has_index, has_size, has_min, has_max;
  uint64_t index, size, min, max;
  int action;
  uint64_t head;
};

struct sw_config {
  int disabled;
  int has_budget;
  uint64_t budget;
  uint64_t reserve;
  uint64_t reserve_allocs; /* live allocations >= min_spill the reserve serves whole at most */
  uint64_t min_spill;
  uint64_t host_limit;
  int report_mode; /* SPILLWAY_REPORT_* */
  uint64_t report_size;
  int backing; /* SPILLWAY_BACKING_* */
  int log_level;
  char stats_dir[512];
  char kmod_device[256];
  struct sw_rule *rules;
  int nrules;
};
extern struct sw_config sw_cfg;

void sw_config_load(void);
int sw_parse_size(const char *s, uint64_t *out);
void sw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const struct sw_rule *sw_rule_match(uint64_t index, uint64_t size);
#define SW_DEBUG(...) do { if (sw_cfg.log_level >= SW_LOG_DEBUG) sw_log(SW_LOG_DEBUG, __VA_ARGS__); } while (0)
#define SW_INFO(...) do { if (sw_cfg.log_level >= SW_LOG_INFO) sw_log(SW_LOG_INFO, __VA_ARGS__); } while (0)
#define SW_WARN(...) do { if (sw_cfg.log_level >= SW_LOG_WARN) sw_log(SW_LOG_WARN, __VA_ARGS__); } while (0)
#define SW_ERROR(...) sw_log(SW_LOG_ERROR, __VA_ARGS__)

/* ---- real symbols and hook table (resolve.c) ---- */
enum { SW_LIB_DRIVER = 0, SW_LIB_RUNTIME = 1, SW_LIB_NVML = 2 };
struct sw_hook {
  const char *name;  /* exported symbol, e.g. cuMemAlloc_v2 */
  const char *base;  /* cuGetProcAddress base name, e.g. cuMemAlloc (driver only) */
  int min_version;   /* cudaVersion from which the base name means this symbol */
  int ptsz;          /* per-thread default stream variant */
  int lib;
  void *hook;
  void **real;
};
extern struct sw_hook sw_hooks[];
extern const int sw_nhooks;

/* Real driver functions the shim calls (never the hooks). */
struct sw_driver {
  void *handle;
  cuCtxGetCurrent_t cuCtxGetCurrent;
  cuCtxGetDevice_t cuCtxGetDevice;
  cuCtxSynchronize_t cuCtxSynchronize;
  cuStreamSynchronize_t cuStreamSynchronize;
  cuCtxPushCurrent_t cuCtxPushCurrent;
  cuCtxPopCurrent_t cuCtxPopCurrent;
  cuStreamIsCapturing_t cuStreamIsCapturing;
  cuDevicePrimaryCtxGetState_t cuDevicePrimaryCtxGetState;
  cuDevicePrimaryCtxRetain_t cuDevicePrimaryCtxRetain;
  cuDevicePrimaryCtxRelease_t cuDevicePrimaryCtxRelease;
  cuDeviceGetAttribute_t cuDeviceGetAttribute;
  cuMemHostAlloc_t cuMemHostAlloc;
  cuMemFreeHost_t cuMemFreeHost;
  cuMemHostGetDevicePointer_t cuMemHostGetDevicePointer;
  cuMemHostRegister_t cuMemHostRegister;
  cuMemHostUnregister_t cuMemHostUnregister;
  cuMemAddressReserve_t cuMemAddressReserve;
  cuMemAddressFree_t cuMemAddressFree;
  cuMemCreate_t cuMemCreate;
  cuMemRelease_t cuMemRelease;
  cuMemMap_t cuMemMap;
  cuMemUnmap_t cuMemUnmap;
  cuMemSetAccess_t cuMemSetAccess;
  cuMemGetAllocationGranularity_t cuMemGetAllocationGranularity;
  cuMemAdvise_t cuMemAdvise;
  cuMemAdvise_v2_t cuMemAdvise_v2;
};
extern struct sw_driver sw_drv;

/* Real pointers of hooked functions (filled by resolve.c, also from dlsym/cuGetProcAddress results). */
struct sw_reals {
  cuMemAlloc_t cuMemAlloc_v2;
  cuMemFree_t cuMemFree_v2;
  cuMemAllocAsync_t cuMemAllocAsync, cuMemAllocAsync_ptsz;
  cuMemFreeAsync_t cuMemFreeAsync, cuMemFreeAsync_ptsz;
  cuMemAllocFromPoolAsync_t cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz;
  cuMemGetInfo_t cuMemGetInfo_v2;
  cuDeviceTotalMem_t cuDeviceTotalMem_v2;
  cuGetProcAddress_v1_t cuGetProcAddress;
  cuGetProcAddress_v2_t cuGetProcAddress_v2, cuGetProcAddress_v2_ptsz;
  cudaMalloc_t cudaMalloc;
  cudaFree_t cudaFree;
  cudaMallocAsync_t cudaMallocAsync, cudaMallocAsync_ptsz;
  cudaFreeAsync_t cudaFreeAsync, cudaFreeAsync_ptsz;
  cudaMallocFromPoolAsync_t cudaMallocFromPoolAsync, cudaMallocFromPoolAsync_ptsz;
  cudaMemGetInfo_t cudaMemGetInfo;
  cudaGetDriverEntryPoint_t cudaGetDriverEntryPoint, cudaGetDriverEntryPoint_ptsz;
  cudaGetDriverEntryPointByVersion_t cudaGetDriverEntryPointByVersion, cudaGetDriverEntryPointByVersion_ptsz;
  /* the program's own VMM, managed and pitched allocations (app_vmm.c, managed.c) */
  cuMemCreate_t cuMemCreate;
  cuMemRelease_t cuMemRelease;
  cuMemMap_t cuMemMap;
  cuMemUnmap_t cuMemUnmap;
  cuMemSetAccess_t cuMemSetAccess;
  cuMemAddressReserve_t cuMemAddressReserve;
  cuMemAddressFree_t cuMemAddressFree;
  cuMemGetAllocationGranularity_t cuMemGetAllocationGranularity;
  cuMemRetainAllocationHandle_t cuMemRetainAllocationHandle;
  cuMemExportToShareableHandle_t cuMemExportToShareableHandle;
  cuMemImportFromShareableHandle_t cuMemImportFromShareableHandle;
  cuMemGetAllocationPropertiesFromHandle_t cuMemGetAllocationPropertiesFromHandle;
  cuMemAllocManaged_t cuMemAllocManaged;
  cuMemAllocPitch_t cuMemAllocPitch_v2;
  cudaMallocManaged_t cudaMallocManaged;
  cudaMallocPitch_t cudaMallocPitch;
  cudaMalloc3D_t cudaMalloc3D;
  nvmlDeviceGetMemoryInfo_t nvmlDeviceGetMemoryInfo;
  nvmlDeviceGetMemoryInfo_v2_t nvmlDeviceGetMemoryInfo_v2;
};
extern struct sw_reals sw_real;

void *sw_real_dlsym(void *handle, const char *name);
void sw_init(void);                      /* once: config, driver, stats; cheap after the first call */
void *sw_real_of(const char *name, int lib); /* resolve a hooked function's real pointer lazily */
void *sw_substitute(void *fn);           /* real driver function -> our hook, else fn */
void *sw_substitute_named(const char *base, void *fn, int version, cuuint64_t flags);

/* Set while a runtime hook calls into the real libcudart: driver hooks below it pass through. */
extern __thread int sw_tls_depth;

/* ---- the one lock (lock.c) ---- */
extern pthread_mutex_t sw_lock;

/* ---- placement (alloc.c, decide.c, backings.c, account.c; internals in place.h) ---- */
enum { SW_API_DRV = 0, SW_API_DRV_ASYNC, SW_API_DRV_POOL, SW_API_RT, SW_API_RT_ASYNC, SW_API_RT_POOL };
/* How to allocate plain VRAM for the hook that was called. */
struct sw_vram_fn {
  int api;
  void *fn;
  CUstream stream;
  CUmemoryPool pool;
};
int sw_alloc(size_t size, const struct sw_vram_fn *v, CUdeviceptr *out);
/* Free ptr if the shim placed it in host memory (SW_FREE_DONE). For the shim's plain VRAM
 * allocations (SW_FREE_VRAM) the caller calls the real free, then sw_free_vram_result(cookie, ok).
 * SW_FREE_UNKNOWN: not the shim's; the caller passes it to CUDA. */
enum { SW_FREE_UNKNOWN = 0, SW_FREE_VRAM = 1, SW_FREE_DONE = 2 };
int sw_free(CUdeviceptr ptr, int async, CUstream stream, void **cookie);
void sw_free_vram_result(void *cookie, int ok);
void sw_adjust_meminfo(int dev, size_t *free_b, size_t *total_b);
void sw_adjust_total(int dev, size_t *total_b);
int sw_current_device(void);
int sw_set_budget(int dev, uint64_t bytes);
void sw_alloc_forget_locked(void);

/* ---- the program's own VMM allocations (app_vmm.c) ---- */
CUresult sw_vmm_create(cuMemCreate_t real, CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                       unsigned long long flags);
CUresult sw_vmm_release(cuMemRelease_t real, CUmemGenericAllocationHandle h);
CUresult sw_vmm_map(cuMemMap_t real, CUdeviceptr va, size_t size, size_t offset, CUmemGenericAllocationHandle h,
                    unsigned long long flags);
CUresult sw_vmm_unmap(cuMemUnmap_t real, CUdeviceptr va, size_t size);
CUresult sw_vmm_retain(cuMemRetainAllocationHandle_t real, CUmemGenericAllocationHandle *h, void *addr);
void sw_vmm_granularity(const CUmemAllocationProp *prop, size_t *g);
CUresult sw_vmm_export(cuMemExportToShareableHandle_t real, void *out, CUmemGenericAllocationHandle h,
                       CUmemAllocationHandleType type, unsigned long long flags);
CUresult sw_vmm_properties(cuMemGetAllocationPropertiesFromHandle_t real, CUmemAllocationProp *prop,
                           CUmemGenericAllocationHandle h);
int sw_vmm_seen(void);
void sw_vmm_forget_locked(void);

/* ---- managed and pitched allocations (managed.c) ---- */
/* How to make the managed allocation for the hook that was called. */
struct sw_managed_fn {
  int runtime; /* 1: cudaMallocManaged (runtime codes), 0: cuMemAllocManaged */
  void *fn;
  unsigned int flags;
};
int sw_managed(size_t size, const struct sw_managed_fn *m, CUdeviceptr *out);
/* The pitch the shim gives a pitched allocation of width bytes per row (a multiple of 512, as CUDA's). */
int sw_pitch(size_t width, size_t rows, size_t *pitch, size_t *bytes);

/* ---- stats (stats.c) ---- */
extern struct spillway_stats *sw_stats;
void sw_stats_open(void);
void sw_stats_begin(void); /* call with sw_lock held */
void sw_stats_end(void);
void sw_stats_tier_add(int tier, uint64_t bytes);
void sw_stats_tier_sub(int tier, uint64_t bytes);

#endif
