/*
 * Accounting: the table of live allocations the shim placed, their stats, frees, and the memory the
 * hooks report (cuMemGetInfo, cudaMemGetInfo, cuDeviceTotalMem, NVML).
 */
#include "place.h"

#include <stdlib.h>
#include <string.h>

#define NBUCKETS 65536
static struct sw_rec *table[NBUCKETS];

static inline size_t bucket(CUdeviceptr p) { return (size_t)(((p >> 12) * 0x9E3779B97F4A7C15ull) >> 48); }

void sw_table_insert_locked(struct sw_rec *r) {
  size_t b = bucket(r->ptr);
  r->next = table[b];
  table[b] = r;
}

struct sw_rec *sw_table_remove_locked(CUdeviceptr p) {
  for (struct sw_rec **pp = &table[bucket(p)]; *pp; pp = &(*pp)->next)
    if ((*pp)->ptr == p) {
      struct sw_rec *r = *pp;
      *pp = r->next;
      return r;
    }
  return NULL;
}

/* Account a placed allocation in the stats. */
void sw_commit_locked(const struct sw_rec *r) {
  sw_stats_begin();
  if (r->vram) sw_stats_tier_add(SPILLWAY_TIER_VRAM, r->vram);
  if (r->host) {
    sw_stats_tier_add(sw_host_tier(r->kind), r->host);
    sw_stats->spills++;
    if (r->host > sw_stats->largest_spill) sw_stats->largest_spill = r->host;
    if (r->vram) sw_stats->splits++;
  }
  sw_stats_end();
}

void sw_release_locked(struct sw_rec *r) {
  sw_unreserve_locked(r);
  sw_stats_begin();
  if (r->vram) sw_stats_tier_sub(SPILLWAY_TIER_VRAM, r->vram);
  if (r->host) sw_stats_tier_sub(sw_host_tier(r->kind), r->host);
  sw_stats->frees++;
  sw_stats_end();
}

/* Host-backed frees put off while their stream was capturing (sw_lock). */
static struct sw_rec *deferred;

static int capture_error(CUresult r) {
  return r == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED || r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ||
         r == CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
}

/* Synchronize ctx (not necessarily the caller's current one); returns the result. */
static CUresult sync_context(CUcontext ctx) {
  if (!sw_drv.cuCtxSynchronize) return CUDA_SUCCESS;
  CUcontext cur = NULL;
  if (sw_drv.cuCtxGetCurrent) sw_drv.cuCtxGetCurrent(&cur);
  if (!ctx || ctx == cur || !sw_drv.cuCtxPushCurrent || !sw_drv.cuCtxPopCurrent) return sw_drv.cuCtxSynchronize();
  if (sw_drv.cuCtxPushCurrent(ctx) != CUDA_SUCCESS) return sw_drv.cuCtxSynchronize();
  CUresult r = sw_drv.cuCtxSynchronize();
  CUcontext popped;
  sw_drv.cuCtxPopCurrent(&popped);
  return r;
}

/* Wait until no queued GPU work can read r's host memory, as cudaFree (the allocation's context) or
 * the stream of a stream-ordered free would. 0: the stream is capturing a graph, which may read it
 * when replayed: the caller defers the free. */
static int wait_for_readers(const struct sw_rec *r, int async, CUstream stream) {
  CUresult res;
  if (async && sw_drv.cuStreamSynchronize) {
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    /* Synchronizing a capturing stream is illegal and would invalidate the capture. */
    if (sw_drv.cuStreamIsCapturing && sw_drv.cuStreamIsCapturing(stream, &st) == CUDA_SUCCESS &&
        st != CU_STREAM_CAPTURE_STATUS_NONE)
      return 0;
    res = sw_drv.cuStreamSynchronize(stream);
  } else {
    res = sync_context(r->ctx);
  }
  if (capture_error(res)) return 0;
  if (res != CUDA_SUCCESS)
    SW_WARN("free 0x%llx: waiting for the device failed (%d); the memory is returned anyway (the context is unusable)",
            (unsigned long long)r->ptr, res);
  return 1;
}

static void give_back(struct sw_rec *r) {
  sw_backing_free(r);
  SW_DEBUG("free 0x%llx: %.1f MiB VRAM + %.1f MiB host (%s) returned", (unsigned long long)r->ptr, sw_mib(r->vram),
           sw_mib(r->host), sw_kind_name[r->kind]);
  pthread_mutex_lock(&sw_lock);
  sw_release_locked(r);
  pthread_mutex_unlock(&sw_lock);
  free(r);
}

/* Free what was deferred once its stream's capture is over (its context synchronized first). */
static void drain_deferred(void) {
  if (!__atomic_load_n(&deferred, __ATOMIC_ACQUIRE)) return;
  pthread_mutex_lock(&sw_lock);
  struct sw_rec *list = deferred, *keep = NULL;
  deferred = NULL;
  pthread_mutex_unlock(&sw_lock);
  while (list) {
    struct sw_rec *r = list;
    list = r->next;
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    int capturing = sw_drv.cuStreamIsCapturing && sw_drv.cuStreamIsCapturing(r->stream, &st) == CUDA_SUCCESS &&
                    st != CU_STREAM_CAPTURE_STATUS_NONE;
    if (!capturing && !capture_error(sync_context(r->ctx))) {
      give_back(r);
    } else {
      r->next = keep;
      keep = r;
    }
  }
  if (!keep) return;
  pthread_mutex_lock(&sw_lock);
  struct sw_rec *tail = keep;
  while (tail->next) tail = tail->next;
  tail->next = deferred;
  deferred = keep;
  pthread_mutex_unlock(&sw_lock);
}
void sw_drain_deferred(void) { drain_deferred(); }

int sw_free(CUdeviceptr ptr, int async, CUstream stream, void **cookie) {
  if (!ptr) return SW_FREE_UNKNOWN;
  pthread_mutex_lock(&sw_lock);
  /* Out of the table before the memory goes back, so a new allocation at this address is never lost. */
  struct sw_rec *r = sw_table_remove_locked(ptr);
  if (!r) {
    sw_stats_begin();
    sw_stats->passthrough_frees++;
    sw_stats_end();
  }
  pthread_mutex_unlock(&sw_lock);
  if (!r) {
    SW_DEBUG("free 0x%llx: not the shim's, passed to CUDA", (unsigned long long)ptr);
    return SW_FREE_UNKNOWN;
  }
  if (r->kind == SW_K_VRAM || r->kind == SW_K_MANAGED) {
    *cookie = r; /* the real free returns it (managed memory: cudaFree/cuMemFree wait for the device) */
    return SW_FREE_VRAM;
  }
  drain_deferred();
  if (!wait_for_readers(r, async, stream)) {
    /* A graph being captured may read it: keep the memory until the capture is over. */
    pthread_mutex_lock(&sw_lock);
    r->stream = stream;
    r->next = deferred;
    deferred = r;
    pthread_mutex_unlock(&sw_lock);
    SW_DEBUG("free 0x%llx during stream capture: deferred until the capture ends", (unsigned long long)ptr);
    return SW_FREE_DONE;
  }
  give_back(r);
  return SW_FREE_DONE;
}

void sw_free_vram_result(void *cookie, int ok) {
  struct sw_rec *r = cookie;
  pthread_mutex_lock(&sw_lock);
  if (ok) sw_release_locked(r);
  else sw_table_insert_locked(r); /* CUDA refused the free: the allocation lives on */
  pthread_mutex_unlock(&sw_lock);
  if (ok) {
    SW_DEBUG("free 0x%llx: %.1f MiB VRAM returned", (unsigned long long)r->ptr, sw_mib(r->vram));
    free(r);
  }
}

static uint64_t host_used_now(void) {
  pthread_mutex_lock(&sw_lock);
  uint64_t u = sw_host_used;
  pthread_mutex_unlock(&sw_lock);
  return u;
}

/* The host part is reported only while every path the program uses can place there: where the driver
 * refuses host-located VMM memory, a program that makes its own cuMemCreate allocations could not be
 * given any of it, so it is told the device's own numbers. */
int sw_report_host(void) { return !(sw_vmm_seen() && sw_vmm_host_unsupported()); }

void sw_adjust_meminfo(int dev, size_t *free_b, size_t *total_b) {
  (void)dev;
  if (sw_cfg.report_mode == SPILLWAY_REPORT_VRAM || !sw_report_host()) return;
  uint64_t hu = host_used_now();
  if (sw_cfg.report_mode == SPILLWAY_REPORT_VRAM_HOST) {
    *total_b += sw_cfg.host_limit;
    *free_b += sw_cfg.host_limit > hu ? sw_cfg.host_limit - hu : 0;
  } else {
    uint64_t used = (*total_b - *free_b) + hu, n = sw_cfg.report_size;
    *total_b = n;
    *free_b = n > used ? n - used : 0;
  }
}

void sw_adjust_total(int dev, size_t *total_b) {
  (void)dev;
  if (!sw_report_host()) return;
  if (sw_cfg.report_mode == SPILLWAY_REPORT_VRAM_HOST) *total_b += sw_cfg.host_limit;
  else if (sw_cfg.report_mode == SPILLWAY_REPORT_SIZE) *total_b = sw_cfg.report_size;
}

/* A forked child has no CUDA allocations: forget the parent's (sw_lock is held by the atfork handler),
 * closing the pool buffers' fds it inherited (their mappings were not: MADV_DONTFORK). The child's
 * copies of the records are freed; a child that touches a parent's host-backed address faults. */
void sw_alloc_forget_locked(void) {
  for (size_t b = 0; b < NBUCKETS; b++)
    for (struct sw_rec *r = table[b], *n; r; r = n) {
      n = r->next;
      sw_backing_forget_in_child(r);
      free(r);
    }
  for (struct sw_rec *r = deferred, *n; r; r = n) {
    n = r->next;
    sw_backing_forget_in_child(r);
    free(r);
  }
  deferred = NULL;
  sw_backings_forget_in_child();
  memset(table, 0, sizeof table);
  for (int i = 0; i < SW_MAX_DEVICES; i++) sw_devs[i].vram_used = 0;
  sw_host_used = 0;
  sw_vmm_forget_locked();
}
