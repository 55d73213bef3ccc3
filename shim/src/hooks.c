/*
 * The exported CUDA driver, CUDA runtime and NVML functions. Each one finds the real function,
 * passes through when the shim is disabled or when a runtime hook is already handling the call
 * below it, and otherwise hands placement to alloc.c.
 *
 * Symbols carry no version tag, so they bind for programs linked against libcudart.so.12 or .13.
 */
#include "shim.h"

static inline void *real_fn(void **slot, const char *name, int lib) {
  if (lib == SW_LIB_DRIVER || lib == SW_LIB_RUNTIME) sw_init();
  void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
  return f ? f : sw_real_of(name, lib);
}
#define REAL(type, name, lib) ((type)real_fn((void **)&sw_real.name, #name, lib))
static inline int passthrough(void) { return sw_cfg.disabled || sw_tls_depth; }

/* ---- driver API ---- */

SW_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t size) {
  cuMemAlloc_t real = REAL(cuMemAlloc_t, cuMemAlloc_v2, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough() || !p || !size) return real(p, size);
  struct sw_vram_fn v = {SW_API_DRV, (void *)real, NULL, NULL};
  return sw_alloc(size, &v, p);
}

static CUresult drv_alloc_async(cuMemAllocAsync_t real, CUdeviceptr *p, size_t size, CUstream s) {
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough() || !p || !size) return real(p, size, s);
  struct sw_vram_fn v = {SW_API_DRV_ASYNC, (void *)real, s, NULL};
  return sw_alloc(size, &v, p);
}
SW_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t size, CUstream s) {
  return drv_alloc_async(REAL(cuMemAllocAsync_t, cuMemAllocAsync, SW_LIB_DRIVER), p, size, s);
}
SW_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *p, size_t size, CUstream s) {
  return drv_alloc_async(REAL(cuMemAllocAsync_t, cuMemAllocAsync_ptsz, SW_LIB_DRIVER), p, size, s);
}

static CUresult drv_alloc_pool(cuMemAllocFromPoolAsync_t real, CUdeviceptr *p, size_t size, CUmemoryPool pool, CUstream s) {
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough() || !p || !size) return real(p, size, pool, s);
  struct sw_vram_fn v = {SW_API_DRV_POOL, (void *)real, s, pool};
  return sw_alloc(size, &v, p);
}
SW_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *p, size_t size, CUmemoryPool pool, CUstream s) {
  return drv_alloc_pool(REAL(cuMemAllocFromPoolAsync_t, cuMemAllocFromPoolAsync, SW_LIB_DRIVER), p, size, pool, s);
}
SW_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *p, size_t size, CUmemoryPool pool, CUstream s) {
  return drv_alloc_pool(REAL(cuMemAllocFromPoolAsync_t, cuMemAllocFromPoolAsync_ptsz, SW_LIB_DRIVER), p, size, pool, s);
}

SW_EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
  cuMemFree_t real = REAL(cuMemFree_t, cuMemFree_v2, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(p);
  void *cookie = NULL;
  int k = sw_free(p, 0, NULL, &cookie);
  if (k == SW_FREE_DONE) return CUDA_SUCCESS;
  CUresult r = real(p);
  if (k == SW_FREE_VRAM) sw_free_vram_result(cookie, r == CUDA_SUCCESS);
  return r;
}

static CUresult drv_free_async(cuMemFreeAsync_t real, CUdeviceptr p, CUstream s) {
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(p, s);
  void *cookie = NULL;
  int k = sw_free(p, 1, s, &cookie);
  if (k == SW_FREE_DONE) return CUDA_SUCCESS;
  CUresult r = real(p, s);
  if (k == SW_FREE_VRAM) sw_free_vram_result(cookie, r == CUDA_SUCCESS);
  return r;
}
SW_EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
  return drv_free_async(REAL(cuMemFreeAsync_t, cuMemFreeAsync, SW_LIB_DRIVER), p, s);
}
SW_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s) {
  return drv_free_async(REAL(cuMemFreeAsync_t, cuMemFreeAsync_ptsz, SW_LIB_DRIVER), p, s);
}

SW_EXPORT CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total_b) {
  cuMemGetInfo_t real = REAL(cuMemGetInfo_t, cuMemGetInfo_v2, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(free_b, total_b);
  if (r == CUDA_SUCCESS && !passthrough() && free_b && total_b) sw_adjust_meminfo(sw_current_device(), free_b, total_b);
  return r;
}

SW_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
  cuDeviceTotalMem_t real = REAL(cuDeviceTotalMem_t, cuDeviceTotalMem_v2, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(bytes, dev);
  if (r == CUDA_SUCCESS && !passthrough() && bytes) sw_adjust_total(dev, bytes);
  return r;
}

/* ---- runtime API ---- */

static cudaError_t rt_alloc(const struct sw_vram_fn *v, void **p, size_t size) {
  CUdeviceptr d = 0;
  int r = sw_alloc(size, v, &d);
  if (r == cudaSuccess) *p = (void *)(uintptr_t)d;
  return r; /* the VRAM path answers in runtime codes; shim failures are 2, cudaErrorMemoryAllocation */
}

SW_EXPORT cudaError_t cudaMalloc(void **p, size_t size) {
  cudaMalloc_t real = REAL(cudaMalloc_t, cudaMalloc, SW_LIB_RUNTIME);
  if (!real) return cudaErrorInitializationError;
  if (passthrough() || !p || !size) return real(p, size);
  struct sw_vram_fn v = {SW_API_RT, (void *)real, NULL, NULL};
  return rt_alloc(&v, p, size);
}

static cudaError_t rt_alloc_async(cudaMallocAsync_t real, void **p, size_t size, cudaStream_t s) {
  if (!real) return cudaErrorInitializationError;
  if (passthrough() || !p || !size) return real(p, size, s);
  struct sw_vram_fn v = {SW_API_RT_ASYNC, (void *)real, s, NULL};
  return rt_alloc(&v, p, size);
}
SW_EXPORT cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s) {
  return rt_alloc_async(REAL(cudaMallocAsync_t, cudaMallocAsync, SW_LIB_RUNTIME), p, size, s);
}
SW_EXPORT cudaError_t cudaMallocAsync_ptsz(void **p, size_t size, cudaStream_t s) {
  return rt_alloc_async(REAL(cudaMallocAsync_t, cudaMallocAsync_ptsz, SW_LIB_RUNTIME), p, size, s);
}

static cudaError_t rt_alloc_pool(cudaMallocFromPoolAsync_t real, void **p, size_t size, cudaMemPool_t pool, cudaStream_t s) {
  if (!real) return cudaErrorInitializationError;
  if (passthrough() || !p || !size) return real(p, size, pool, s);
  struct sw_vram_fn v = {SW_API_RT_POOL, (void *)real, s, pool};
  return rt_alloc(&v, p, size);
}
SW_EXPORT cudaError_t cudaMallocFromPoolAsync(void **p, size_t size, cudaMemPool_t pool, cudaStream_t s) {
  return rt_alloc_pool(REAL(cudaMallocFromPoolAsync_t, cudaMallocFromPoolAsync, SW_LIB_RUNTIME), p, size, pool, s);
}
SW_EXPORT cudaError_t cudaMallocFromPoolAsync_ptsz(void **p, size_t size, cudaMemPool_t pool, cudaStream_t s) {
  return rt_alloc_pool(REAL(cudaMallocFromPoolAsync_t, cudaMallocFromPoolAsync_ptsz, SW_LIB_RUNTIME), p, size, pool, s);
}

SW_EXPORT cudaError_t cudaFree(void *p) {
  cudaFree_t real = REAL(cudaFree_t, cudaFree, SW_LIB_RUNTIME);
  if (!real) return cudaErrorInitializationError;
  if (passthrough() || !p) return real(p);
  void *cookie = NULL;
  int k = sw_free((CUdeviceptr)(uintptr_t)p, 0, NULL, &cookie);
  if (k == SW_FREE_DONE) return cudaSuccess;
  sw_tls_depth++;
  cudaError_t r = real(p);
  sw_tls_depth--;
  if (k == SW_FREE_VRAM) sw_free_vram_result(cookie, r == cudaSuccess);
  return r;
}

static cudaError_t rt_free_async(cudaFreeAsync_t real, void *p, cudaStream_t s) {
  if (!real) return cudaErrorInitializationError;
  if (passthrough() || !p) return real(p, s);
  void *cookie = NULL;
  int k = sw_free((CUdeviceptr)(uintptr_t)p, 1, s, &cookie);
  if (k == SW_FREE_DONE) return cudaSuccess;
  sw_tls_depth++;
  cudaError_t r = real(p, s);
  sw_tls_depth--;
  if (k == SW_FREE_VRAM) sw_free_vram_result(cookie, r == cudaSuccess);
  return r;
}
SW_EXPORT cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
  return rt_free_async(REAL(cudaFreeAsync_t, cudaFreeAsync, SW_LIB_RUNTIME), p, s);
}
SW_EXPORT cudaError_t cudaFreeAsync_ptsz(void *p, cudaStream_t s) {
  return rt_free_async(REAL(cudaFreeAsync_t, cudaFreeAsync_ptsz, SW_LIB_RUNTIME), p, s);
}

SW_EXPORT cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
  cudaMemGetInfo_t real = REAL(cudaMemGetInfo_t, cudaMemGetInfo, SW_LIB_RUNTIME);
  if (!real) return cudaErrorInitializationError;
  if (passthrough()) return real(free_b, total_b);
  sw_tls_depth++; /* the runtime's own cuMemGetInfo call must not be adjusted twice */
  cudaError_t r = real(free_b, total_b);
  sw_tls_depth--;
  if (r == cudaSuccess && free_b && total_b) sw_adjust_meminfo(sw_current_device(), free_b, total_b);
  return r;
}

/* ---- NVML ---- */

static void nvml_adjust(unsigned long long *total, unsigned long long *free_b, unsigned long long *used,
                        unsigned long long reserved) {
  size_t t = (size_t)*total, f = (size_t)*free_b;
  sw_adjust_meminfo(-1, &f, &t);
  *total = t, *free_b = f;
  *used = t - f > reserved ? t - f - reserved : 0;
}

SW_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *m) {
  nvmlDeviceGetMemoryInfo_t real = REAL(nvmlDeviceGetMemoryInfo_t, nvmlDeviceGetMemoryInfo, SW_LIB_NVML);
  if (!real) return NVML_ERROR_NOT_SUPPORTED;
  nvmlReturn_t r = real(dev, m);
  if (r == NVML_SUCCESS && m && !sw_cfg.disabled) nvml_adjust(&m->total, &m->free, &m->used, 0);
  return r;
}

SW_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, nvmlMemory_v2_t *m) {
  nvmlDeviceGetMemoryInfo_v2_t real = REAL(nvmlDeviceGetMemoryInfo_v2_t, nvmlDeviceGetMemoryInfo_v2, SW_LIB_NVML);
  if (!real) return NVML_ERROR_NOT_SUPPORTED;
  nvmlReturn_t r = real(dev, m);
  if (r == NVML_SUCCESS && m && !sw_cfg.disabled) nvml_adjust(&m->total, &m->free, &m->used, m->reserved);
  return r;
}

/* ---- the hook table: dlsym and the entry-point queries answer these ---- */

CUresult cuGetProcAddress(const char *, void **, int, cuuint64_t);
CUresult cuGetProcAddress_v2(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
CUresult cuGetProcAddress_v2_ptsz(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
cudaError_t cudaGetDriverEntryPoint(const char *, void **, unsigned long long, cudaDriverEntryPointQueryResult *);
cudaError_t cudaGetDriverEntryPoint_ptsz(const char *, void **, unsigned long long, cudaDriverEntryPointQueryResult *);
cudaError_t cudaGetDriverEntryPointByVersion(const char *, void **, unsigned int, unsigned long long, cudaDriverEntryPointQueryResult *);
cudaError_t cudaGetDriverEntryPointByVersion_ptsz(const char *, void **, unsigned int, unsigned long long,
                                                  cudaDriverEntryPointQueryResult *);

/* hooks_vmm.c */
CUresult cuMemCreate(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
CUresult cuMemRelease(CUmemGenericAllocationHandle);
CUresult cuMemMap(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
CUresult cuMemUnmap(CUdeviceptr, size_t);
CUresult cuMemSetAccess(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
CUresult cuMemAddressReserve(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
CUresult cuMemAddressFree(CUdeviceptr, size_t);
CUresult cuMemGetAllocationGranularity(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *, void *);
CUresult cuMemExportToShareableHandle(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType);
CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *, CUmemGenericAllocationHandle);
CUresult cuMemAllocManaged(CUdeviceptr *, size_t, unsigned int);
CUresult cuMemAllocPitch_v2(CUdeviceptr *, size_t *, size_t, size_t, unsigned int);
cudaError_t cudaMallocManaged(void **, size_t, unsigned int);
cudaError_t cudaMallocPitch(void **, size_t *, size_t, size_t);
cudaError_t cudaMalloc3D(struct cudaPitchedPtr *, struct cudaExtent);

#define D(name, base, ver, ptsz) {#name, base, ver, ptsz, SW_LIB_DRIVER, (void *)name, (void **)&sw_real.name}
#define RT(name) {#name, NULL, 0, 0, SW_LIB_RUNTIME, (void *)name, (void **)&sw_real.name}
#define NV(name) {#name, NULL, 0, 0, SW_LIB_NVML, (void *)name, (void **)&sw_real.name}
struct sw_hook sw_hooks[] = {
    D(cuMemAlloc_v2, "cuMemAlloc", 3020, 0),
    D(cuMemFree_v2, "cuMemFree", 3020, 0),
    D(cuMemAllocAsync, "cuMemAllocAsync", 11020, 0),
    D(cuMemAllocAsync_ptsz, "cuMemAllocAsync", 11020, 1),
    D(cuMemFreeAsync, "cuMemFreeAsync", 11020, 0),
    D(cuMemFreeAsync_ptsz, "cuMemFreeAsync", 11020, 1),
    D(cuMemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", 11020, 0),
    D(cuMemAllocFromPoolAsync_ptsz, "cuMemAllocFromPoolAsync", 11020, 1),
    D(cuMemGetInfo_v2, "cuMemGetInfo", 3020, 0),
    D(cuDeviceTotalMem_v2, "cuDeviceTotalMem", 3020, 0),
    D(cuMemCreate, "cuMemCreate", 10020, 0),
    D(cuMemRelease, "cuMemRelease", 10020, 0),
    D(cuMemMap, "cuMemMap", 10020, 0),
    D(cuMemUnmap, "cuMemUnmap", 10020, 0),
    D(cuMemSetAccess, "cuMemSetAccess", 10020, 0),
    D(cuMemAddressReserve, "cuMemAddressReserve", 10020, 0),
    D(cuMemAddressFree, "cuMemAddressFree", 10020, 0),
    D(cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity", 10020, 0),
    D(cuMemRetainAllocationHandle, "cuMemRetainAllocationHandle", 11000, 0),
    D(cuMemExportToShareableHandle, "cuMemExportToShareableHandle", 10020, 0),
    D(cuMemImportFromShareableHandle, "cuMemImportFromShareableHandle", 10020, 0),
    D(cuMemGetAllocationPropertiesFromHandle, "cuMemGetAllocationPropertiesFromHandle", 10020, 0),
    D(cuMemAllocManaged, "cuMemAllocManaged", 6000, 0),
    D(cuMemAllocPitch_v2, "cuMemAllocPitch", 3020, 0),
    D(cuGetProcAddress, "cuGetProcAddress", 11030, 0),
    D(cuGetProcAddress_v2, "cuGetProcAddress", 12000, 0),
    D(cuGetProcAddress_v2_ptsz, "cuGetProcAddress", 12000, 1),
    RT(cudaMalloc),
    RT(cudaFree),
    RT(cudaMallocAsync),
    RT(cudaMallocAsync_ptsz),
    RT(cudaFreeAsync),
    RT(cudaFreeAsync_ptsz),
    RT(cudaMallocFromPoolAsync),
    RT(cudaMallocFromPoolAsync_ptsz),
    RT(cudaMallocManaged),
    RT(cudaMallocPitch),
    RT(cudaMalloc3D),
    RT(cudaMemGetInfo),
    RT(cudaGetDriverEntryPoint),
    RT(cudaGetDriverEntryPoint_ptsz),
    RT(cudaGetDriverEntryPointByVersion),
    RT(cudaGetDriverEntryPointByVersion_ptsz),
    NV(nvmlDeviceGetMemoryInfo),
    NV(nvmlDeviceGetMemoryInfo_v2),
};
const int sw_nhooks = (int)(sizeof sw_hooks / sizeof sw_hooks[0]);
