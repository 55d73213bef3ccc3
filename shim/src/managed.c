/*
 * Managed memory (cuMemAllocManaged / cudaMallocManaged) and the pitch of pitched allocations.
 *
 * Managed memory that outgrows free VRAM is migrated back and forth by the driver, and oversubscribed
 * it can stall the whole GPU. Policy: while it fits the budget (as a plain allocation would) it is
 * passed through and counted in VRAM; past it, it is made with the preferred location set to host
 * memory and the device given access (cuMemAdvise), so its pages stay in host memory and the GPU
 * reads them in place, counted as host memory (under SPILLWAY_HOST_LIMIT); if the advice cannot be
 * given, the allocation is freed again and answered out of memory. Never more than the budget in VRAM.
 */
#include "place.h"

#include <stdlib.h>
#include <string.h>

/* Preferred location host and accessed-by dev, with whichever cuMemAdvise the driver exports. */
static CUresult advise_host(CUdeviceptr p, size_t size, int dev) {
  if (sw_drv.cuMemAdvise) {
    CUresult r = sw_drv.cuMemAdvise(p, size, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, CU_DEVICE_CPU);
    return r == CUDA_SUCCESS ? sw_drv.cuMemAdvise(p, size, CU_MEM_ADVISE_SET_ACCESSED_BY, dev) : r;
  }
  if (sw_drv.cuMemAdvise_v2) {
    CUmemLocation host = {CU_MEM_LOCATION_TYPE_HOST, 0}, gpu = {CU_MEM_LOCATION_TYPE_DEVICE, dev};
    CUresult r = sw_drv.cuMemAdvise_v2(p, size, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, host);
    return r == CUDA_SUCCESS ? sw_drv.cuMemAdvise_v2(p, size, CU_MEM_ADVISE_SET_ACCESSED_BY, gpu) : r;
  }
  return CUDA_ERROR_NOT_SUPPORTED;
}

static int managed_call(const struct sw_managed_fn *m, CUdeviceptr *out, size_t size) {
  if (!m->runtime) return ((cuMemAllocManaged_t)m->fn)(out, size, m->flags);
  void *p = NULL;
  sw_tls_depth++;
  int r = ((cudaMallocManaged_t)m->fn)(&p, size, m->flags);
  sw_tls_depth--;
  *out = (CUdeviceptr)(uintptr_t)p;
  return r;
}

static void managed_free(const struct sw_managed_fn *m, CUdeviceptr p) {
  if (m->runtime) {
    cudaFree_t f = (cudaFree_t)sw_real_of("cudaFree", SW_LIB_RUNTIME);
    if (f) sw_tls_depth++, f((void *)(uintptr_t)p), sw_tls_depth--;
  } else {
    cuMemFree_t f = (cuMemFree_t)sw_real_of("cuMemFree_v2", SW_LIB_DRIVER);
    if (f) f(p);
  }
}

int sw_managed(size_t size, const struct sw_managed_fn *m, CUdeviceptr *out) {
  if (m->runtime && sw_drv.cuCtxGetCurrent) {
    CUcontext ctx = NULL;
    if (sw_drv.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
      cudaFree_t rfree = (cudaFree_t)sw_real_of("cudaFree", SW_LIB_RUNTIME);
      if (rfree) sw_tls_depth++, rfree(NULL), sw_tls_depth--;
    }
  }
  int dev = sw_current_device();
  if (dev < 0) return managed_call(m, out, size); /* no context: CUDA answers */
  sw_dev_init(dev);
  struct sw_rec *rec = calloc(1, sizeof *rec);
  if (!rec) return CUDA_ERROR_OUT_OF_MEMORY;
  rec->size = size, rec->dev = dev, rec->kind = SW_K_MANAGED, rec->fd = -1;
  pthread_mutex_lock(&sw_lock);
  sw_stats_begin();
  sw_stats->allocs++;
  if (size > sw_stats->largest_alloc) sw_stats->largest_alloc = size;
  sw_stats_end();
  int where = sw_decide_whole_locked(dev, size, size, 0, sw_cfg.min_spill, &rec->in_reserve);
  pthread_mutex_unlock(&sw_lock);
  int r = CUDA_ERROR_OUT_OF_MEMORY;
  if (where != SW_WHOLE_REFUSED) {
    if (where == SW_WHOLE_VRAM) rec->vram = size;
    else rec->host = size;
    r = managed_call(m, &rec->ptr, size);
    if (r == CUDA_SUCCESS && where == SW_WHOLE_HOST) {
      CUresult a = advise_host(rec->ptr, size, dev);
      if (a != CUDA_SUCCESS) {
        SW_WARN("managed %.1f MiB on device %d: over the VRAM budget and cuMemAdvise(preferred location host) failed (%d): "
                "answered out of memory rather than oversubscribing the GPU", sw_mib(size), dev, a);
        managed_free(m, rec->ptr);
        r = CUDA_ERROR_OUT_OF_MEMORY;
      }
    }
  }
  pthread_mutex_lock(&sw_lock);
  if (r == CUDA_SUCCESS) {
    sw_table_insert_locked(rec);
    sw_commit_locked(rec);
  } else {
    if (where != SW_WHOLE_REFUSED) sw_unreserve_locked(rec);
    sw_stats_begin();
    sw_stats->failures++;
    sw_stats_end();
  }
  pthread_mutex_unlock(&sw_lock);
  if (r != CUDA_SUCCESS) {
    SW_INFO("managed %.1f MiB on device %d: failed (%d%s)", sw_mib(size), dev, r,
            where == SW_WHOLE_REFUSED ? ", over the budget and the host limit" : "");
    free(rec);
    return r == CUDA_SUCCESS ? CUDA_ERROR_OUT_OF_MEMORY : (m->runtime && r == CUDA_ERROR_OUT_OF_MEMORY ? cudaErrorMemoryAllocation : r);
  }
  SW_DEBUG("managed %.1f MiB on device %d -> %s at 0x%llx", sw_mib(size), dev,
           rec->host ? "preferred location host, accessed by the device (over the budget)" : "as asked (fits the budget)",
           (unsigned long long)rec->ptr);
  *out = rec->ptr;
  return CUDA_SUCCESS;
}

int sw_pitch(size_t width, size_t rows, size_t *pitch, size_t *bytes) {
  const size_t align = 512;
  if (!width || !rows || width > SIZE_MAX - align) return -1;
  size_t p = (width + align - 1) / align * align;
  if (p > SIZE_MAX / rows) return -1;
  *pitch = p;
  *bytes = p * rows;
  return 0;
}
