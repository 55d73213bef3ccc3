/*
 * The exported hooks of the program's own VMM calls, managed and pitched allocations. Placement and
 * counting are in app_vmm.c and managed.c; the calls that need neither (reserve, access, shareable
 * handles) pass through and are traced at SPILLWAY_LOG=debug, to see what a framework calls.
 */
#include "shim.h"

static inline void *real_fn(void **slot, const char *name, int lib) {
  sw_init();
  void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
  return f ? f : sw_real_of(name, lib);
}
#define REAL(type, name, lib) ((type)real_fn((void **)&sw_real.name, #name, lib))
static inline int passthrough(void) { return sw_cfg.disabled || sw_tls_depth; }

/* ---- driver VMM ---- */

SW_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                               unsigned long long flags) {
  cuMemCreate_t real = REAL(cuMemCreate_t, cuMemCreate, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(h, size, prop, flags);
  return sw_vmm_create(real, h, size, prop, flags);
}

SW_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle h) {
  cuMemRelease_t real = REAL(cuMemRelease_t, cuMemRelease, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(h);
  return sw_vmm_release(real, h);
}

SW_EXPORT CUresult cuMemMap(CUdeviceptr va, size_t size, size_t offset, CUmemGenericAllocationHandle h, unsigned long long flags) {
  cuMemMap_t real = REAL(cuMemMap_t, cuMemMap, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(va, size, offset, h, flags);
  return sw_vmm_map(real, va, size, offset, h, flags);
}

SW_EXPORT CUresult cuMemUnmap(CUdeviceptr va, size_t size) {
  cuMemUnmap_t real = REAL(cuMemUnmap_t, cuMemUnmap, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(va, size);
  return sw_vmm_unmap(real, va, size);
}

SW_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *h, void *addr) {
  cuMemRetainAllocationHandle_t real = REAL(cuMemRetainAllocationHandle_t, cuMemRetainAllocationHandle, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(h, addr);
  return sw_vmm_retain(real, h, addr);
}

SW_EXPORT CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop, CUmemAllocationGranularity_flags f) {
  cuMemGetAllocationGranularity_t real = REAL(cuMemGetAllocationGranularity_t, cuMemGetAllocationGranularity, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(g, prop, f);
  if (r == CUDA_SUCCESS && !passthrough()) sw_vmm_granularity(prop, g);
  return r;
}

SW_EXPORT CUresult cuMemSetAccess(CUdeviceptr va, size_t size, const CUmemAccessDesc *desc, size_t count) {
  cuMemSetAccess_t real = REAL(cuMemSetAccess_t, cuMemSetAccess, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(va, size, desc, count);
  if (!passthrough()) SW_DEBUG("cuMemSetAccess 0x%llx + %.1f MiB, %zu descriptors: %d", va, (double)size / 1048576.0, count, r);
  return r;
}

SW_EXPORT CUresult cuMemAddressReserve(CUdeviceptr *va, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags) {
  cuMemAddressReserve_t real = REAL(cuMemAddressReserve_t, cuMemAddressReserve, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(va, size, align, addr, flags);
  if (!passthrough()) SW_DEBUG("cuMemAddressReserve %.1f MiB: %d at 0x%llx", (double)size / 1048576.0, r, va && !r ? *va : 0ull);
  return r;
}

SW_EXPORT CUresult cuMemAddressFree(CUdeviceptr va, size_t size) {
  cuMemAddressFree_t real = REAL(cuMemAddressFree_t, cuMemAddressFree, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(va, size);
  if (!passthrough()) SW_DEBUG("cuMemAddressFree 0x%llx + %.1f MiB: %d", va, (double)size / 1048576.0, r);
  return r;
}

SW_EXPORT CUresult cuMemExportToShareableHandle(void *out, CUmemGenericAllocationHandle h, CUmemAllocationHandleType type,
                                                unsigned long long flags) {
  cuMemExportToShareableHandle_t real = REAL(cuMemExportToShareableHandle_t, cuMemExportToShareableHandle, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(out, h, type, flags);
  CUresult r = sw_vmm_export(real, out, h, type, flags);
  SW_DEBUG("cuMemExportToShareableHandle 0x%llx type %d: %d", h, (int)type, r);
  return r;
}

SW_EXPORT CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h) {
  cuMemGetAllocationPropertiesFromHandle_t real =
      REAL(cuMemGetAllocationPropertiesFromHandle_t, cuMemGetAllocationPropertiesFromHandle, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough()) return real(prop, h);
  return sw_vmm_properties(real, prop, h);
}

/* Imported memory belongs to (and is counted by) the process that created it. */
SW_EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *h, void *handle, CUmemAllocationHandleType type) {
  cuMemImportFromShareableHandle_t real = REAL(cuMemImportFromShareableHandle_t, cuMemImportFromShareableHandle, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(h, handle, type);
  if (!passthrough()) SW_DEBUG("cuMemImportFromShareableHandle type %d: %d", (int)type, r);
  return r;
}

/* ---- managed and pitched, driver ---- */

SW_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *p, size_t size, unsigned int flags) {
  cuMemAllocManaged_t real = REAL(cuMemAllocManaged_t, cuMemAllocManaged, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  if (passthrough() || !p || !size || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)) return real(p, size, flags);
  struct sw_managed_fn m = {0, (void *)real, flags};
  return sw_managed(size, &m, p);
}

SW_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *p, size_t *pitch, size_t width, size_t height, unsigned int elem) {
  cuMemAllocPitch_t real = REAL(cuMemAllocPitch_t, cuMemAllocPitch_v2, SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  size_t pt = 0, bytes = 0;
  cuMemAlloc_t lin = (cuMemAlloc_t)sw_real_of("cuMemAlloc_v2", SW_LIB_DRIVER);
  if (passthrough() || !p || !pitch || (elem != 4 && elem != 8 && elem != 16) || sw_pitch(width, height, &pt, &bytes) || !lin)
    return real(p, pitch, width, height, elem);
  /* One linear allocation of pitch x height, placed like any other. */
  struct sw_vram_fn v = {SW_API_DRV, (void *)lin, NULL, NULL};
  CUresult r = sw_alloc(bytes, &v, p);
  if (r == CUDA_SUCCESS) *pitch = pt;
  return r;
}

/* ---- managed and pitched, runtime ---- */

SW_EXPORT cudaError_t cudaMallocManaged(void **p, size_t size, unsigned int flags) {
  cudaMallocManaged_t real = REAL(cudaMallocManaged_t, cudaMallocManaged, SW_LIB_RUNTIME);
  if (!real) return cudaErrorInitializationError;
  if (passthrough() || !p || !size || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)) return real(p, size, flags);
  struct sw_managed_fn m = {1, (void *)real, flags};
  CUdeviceptr d = 0;
  int r = sw_managed(size, &m, &d);
  if (r == cudaSuccess) *p = (void *)(uintptr_t)d;
  return r;
}

static cudaError_t rt_pitched(size_t bytes, void **p) {
  cudaMalloc_t lin = (cudaMalloc_t)sw_real_of("cudaMalloc", SW_LIB_RUNTIME);
  if (!lin) return cudaErrorInitializationError;
  struct sw_vram_fn v = {SW_API_RT, (void *)lin, NULL, NULL};
  CUdeviceptr d = 0;
  int r = sw_alloc(bytes, &v, &d);
  if (r == cudaSuccess) *p = (void *)(uintptr_t)d;
  return r;
}

SW_EXPORT cudaError_t cudaMallocPitch(void **p, size_t *pitch, size_t width, size_t height) {
  cudaMallocPitch_t real = REAL(cudaMallocPitch_t, cudaMallocPitch, SW_LIB_RUNTIME);
  if (!real) return cudaErrorInitializationError;
  size_t pt = 0, bytes = 0;
  if (passthrough() || !p || !pitch || sw_pitch(width, height, &pt, &bytes)) return real(p, pitch, width, height);
  cudaError_t r = rt_pitched(bytes, p);
  if (r == cudaSuccess) *pitch = pt;
  return r;
}

SW_EXPORT cudaError_t cudaMalloc3D(struct cudaPitchedPtr *pp, struct cudaExtent e) {
  cudaMalloc3D_t real = REAL(cudaMalloc3D_t, cudaMalloc3D, SW_LIB_RUNTIME);
  if (!real) return cudaErrorInitializationError;
  size_t pt = 0, bytes = 0;
  if (passthrough() || !pp || !e.depth || e.height > SIZE_MAX / e.depth || sw_pitch(e.width, e.height * e.depth, &pt, &bytes))
    return real(pp, e);
  void *p = NULL;
  cudaError_t r = rt_pitched(bytes, &p);
  if (r == cudaSuccess) *pp = (struct cudaPitchedPtr){p, pt, e.width, e.height};
  return r;
}
