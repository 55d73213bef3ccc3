/*
 * Placing one allocation: ask the policy (decide.c), build it in VRAM through the API that was called
 * or in a host backing (backings.c), and record it (account.c); retry in host memory when VRAM or a
 * VMM head is refused, or with another backing when host VMM turns out unsupported.
 */
#include "place.h"

#include <stdlib.h>
#include <string.h>

static int vram_call(const struct sw_vram_fn *v, CUdeviceptr *out, size_t size) {
  void *p = NULL;
  int r;
  switch (v->api) {
    case SW_API_DRV: return ((cuMemAlloc_t)v->fn)(out, size);
    case SW_API_DRV_ASYNC: return ((cuMemAllocAsync_t)v->fn)(out, size, v->stream);
    case SW_API_DRV_POOL: return ((cuMemAllocFromPoolAsync_t)v->fn)(out, size, v->pool, v->stream);
    case SW_API_RT: sw_tls_depth++, r = ((cudaMalloc_t)v->fn)(&p, size), sw_tls_depth--; break;
    case SW_API_RT_ASYNC: sw_tls_depth++, r = ((cudaMallocAsync_t)v->fn)(&p, size, v->stream), sw_tls_depth--; break;
    default: sw_tls_depth++, r = ((cudaMallocFromPoolAsync_t)v->fn)(&p, size, v->pool, v->stream), sw_tls_depth--; break;
  }
  *out = (CUdeviceptr)p;
  return r;
}

static void count_locked(uint64_t *counter) {
  sw_stats_begin();
  (*counter)++;
  sw_stats_end();
}

/* The runtime makes its context current lazily; the shim's own driver calls need it now. */
static void ensure_runtime_context(const struct sw_vram_fn *v) {
  if (v->api < SW_API_RT || !sw_drv.cuCtxGetCurrent) return;
  CUcontext ctx = NULL;
  if (sw_drv.cuCtxGetCurrent(&ctx) == CUDA_SUCCESS && ctx) return;
  cudaFree_t rfree = (cudaFree_t)sw_real_of("cudaFree", SW_LIB_RUNTIME);
  if (rfree) sw_tls_depth++, rfree(NULL), sw_tls_depth--;
}

int sw_alloc(size_t size, const struct sw_vram_fn *v, CUdeviceptr *out) {
  ensure_runtime_context(v);
  sw_drain_deferred();
  int dev = sw_current_device();
  if (dev < 0) return vram_call(v, out, size); /* no context: let CUDA answer */
  sw_dev_init(dev);
  CUcontext ctx = NULL;
  if (sw_drv.cuCtxGetCurrent) sw_drv.cuCtxGetCurrent(&ctx);
  /* The table entry first: an allocation made but not tracked could never be freed or uncounted. */
  struct sw_rec *heap = malloc(sizeof *heap);
  if (!heap) {
    SW_ERROR("out of host memory for the allocation table: %.1f MiB allocation refused", sw_mib(size));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }

  pthread_mutex_lock(&sw_lock);
  uint64_t index = sw_stats->allocs;
  sw_stats_begin();
  sw_stats->allocs++;
  if (size > sw_stats->largest_alloc) sw_stats->largest_alloc = size;
  sw_stats_end();
  pthread_mutex_unlock(&sw_lock);
  const struct sw_rule *rule = sw_rule_match(index, size);
  int pinned_vram = rule && rule->action == SW_ACT_VRAM;
  int force_host = 0, last_was_vram = 0;
  int last = CUDA_ERROR_OUT_OF_MEMORY;

  for (int attempt = 0; attempt < 3; attempt++) {
    struct sw_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.size = size, rec.dev = dev, rec.fd = -1, rec.ctx = ctx;
    const char *why = "";
    pthread_mutex_lock(&sw_lock);
    int decided = sw_decide_locked(&rec, rule, force_host, &why);
    uint64_t budget = sw_devs[dev].budget, used = sw_devs[dev].vram_used;
    pthread_mutex_unlock(&sw_lock);
    if (decided != SW_DECIDE_OK) {
      last_was_vram = 0;
      break;
    }

    int r, head_failed = 0, host_unsupported = 0;
    if (rec.kind == SW_K_VRAM) r = vram_call(v, &rec.ptr, size);
    else r = sw_backing_alloc(&rec, &head_failed, &host_unsupported);

    if (r == CUDA_SUCCESS) {
      pthread_mutex_lock(&sw_lock);
      *heap = rec;
      sw_table_insert_locked(heap);
      sw_commit_locked(heap);
      pthread_mutex_unlock(&sw_lock);
      SW_DEBUG("alloc %.1f MiB on device %d (#%llu) -> %s: %.1f MiB VRAM + %.1f MiB host (%s) at 0x%llx; "
               "VRAM in use %.1f of %.1f MiB budget",
               sw_mib(size), dev, (unsigned long long)index, why, sw_mib(rec.vram), sw_mib(rec.host), sw_kind_name[rec.kind],
               (unsigned long long)rec.ptr, sw_mib(used), sw_mib(budget));
      *out = rec.ptr;
      return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&sw_lock);
    sw_unreserve_locked(&rec);
    if (rec.kind != SW_K_VRAM) count_locked(&sw_stats->host_failures);
    pthread_mutex_unlock(&sw_lock);
    last = r;
    last_was_vram = rec.kind == SW_K_VRAM;
    SW_DEBUG("alloc %.1f MiB on device %d as %s (%.1f MiB VRAM + %.1f MiB host) failed: %d", sw_mib(size), dev,
             sw_kind_name[rec.kind], sw_mib(rec.vram), sw_mib(rec.host), r);
    if (rec.kind == SW_K_VRAM) {
      /* The budget said yes but the device said no (VRAM is full, e.g. small allocations used up the
       * reserve): spill it, small or not, unless a rule pinned it to VRAM. */
      if (r != CUDA_ERROR_OUT_OF_MEMORY || pinned_vram) break;
      force_host = 1;
    } else if (rec.kind == SW_K_VMM && host_unsupported && sw_cfg.backing == SPILLWAY_BACKING_AUTO) {
      SW_WARN("host allocations through CUDA VMM are not supported here (%d): using mapped pinned memory", r);
      sw_note_vmm_host_unsupported();
    } else if (rec.kind == SW_K_VMM && head_failed) {
      force_host = 1;
    } else {
      break;
    }
  }
  free(heap);
  pthread_mutex_lock(&sw_lock);
  count_locked(&sw_stats->failures);
  pthread_mutex_unlock(&sw_lock);
  SW_INFO("alloc %.1f MiB on device %d: failed (%d)", sw_mib(size), dev, last);
  /* Host backing failures are out of memory, as CUDA would say; VRAM errors pass through as they are. */
  return last_was_vram ? last : CUDA_ERROR_OUT_OF_MEMORY;
}
