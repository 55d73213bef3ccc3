/*
 * The program's own CUDA VMM allocations (PyTorch expandable segments, llama.cpp's VMM pool, vLLM's
 * CuMemAllocator, XLA): cuMemCreate on a device is placed per handle. While it fits the budget it is
 * created as asked and counted in VRAM; past the budget (or when the device refuses it) the same
 * handle is created on the GPU's host NUMA node instead, which the program maps into its own range and
 * the GPU reads in place. The physical memory lives until the last of the handle's references (the
 * handle, retained handles, mappings) is gone, as in the driver: only then is it uncounted.
 *
 * One handle larger than the reserve and than what is left of the budget (XLA preallocates 75% of the
 * reported total as one handle) is split: the program gets a handle of the shim's own (bit 63 set, never a driver handle)
 * standing for a VRAM head and a host tail; cuMemMap maps both back to back, cuMemRelease releases
 * both, cuMemRetainAllocationHandle answers it for either part, cuMemGetAllocationPropertiesFromHandle
 * the program's properties; it cannot be exported (CUDA_ERROR_NOT_SUPPORTED).
 */
#include "place.h"

#include <stdlib.h>
#include <string.h>

struct handle_rec {
  struct handle_rec *next;
  CUmemGenericAllocationHandle h; /* the program's handle */
  int dev;
  uint64_t vram, host; /* physical bytes in VRAM / host memory */
  int in_reserve;
  long refs; /* the handle and retained copies */
  long maps; /* live mappings */
  int split; /* h is the shim's: head_h (VRAM) + tail_h (host) */
  CUmemGenericAllocationHandle head_h, tail_h;
  CUmemAllocationProp prop; /* what the program asked for (split handles) */
};
#define SPLIT_TAG (1ull << 63)
struct map_rec {
  struct map_rec *next;
  CUdeviceptr va;
  size_t size;
  struct handle_rec *hr;
};

#define NB 1024
static struct handle_rec *handles[NB];
static struct map_rec *maps[NB];
static int seen;

static inline size_t hb(unsigned long long k) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 54); }
static inline size_t vb(CUdeviceptr va) { return hb(va >> 21); }

static struct handle_rec *handle_find_locked(CUmemGenericAllocationHandle h) {
  for (struct handle_rec *r = handles[hb(h)]; r; r = r->next)
    if (r->h == h) return r;
  return NULL;
}

/* The split handle one of whose parts is the driver handle h. */
static struct handle_rec *split_of_part_locked(CUmemGenericAllocationHandle h) {
  for (size_t i = 0; i < NB; i++)
    for (struct handle_rec *r = handles[i]; r; r = r->next)
      if (r->split && (r->head_h == h || r->tail_h == h)) return r;
  return NULL;
}

static void handle_insert_locked(struct handle_rec *r) {
  size_t b = hb(r->h);
  r->next = handles[b];
  handles[b] = r;
}

int sw_vmm_seen(void) { return __atomic_load_n(&seen, __ATOMIC_ACQUIRE); }

/* Memory gone back to the driver: out of the table and the counters. */
static void handle_drop_locked(struct handle_rec *r) {
  for (struct handle_rec **pp = &handles[hb(r->h)]; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  struct sw_rec acct = {.dev = r->dev, .size = r->vram + r->host, .vram = r->vram, .host = r->host,
                        .kind = r->host ? SW_K_VMM : SW_K_VRAM, .in_reserve = r->in_reserve};
  sw_release_locked(&acct);
  SW_DEBUG("cuMemCreate handle 0x%llx: %.1f MiB VRAM + %.1f MiB host returned", r->h, sw_mib(r->vram), sw_mib(r->host));
  free(r);
}

static void count_alloc_locked(uint64_t size, int failed) {
  sw_stats_begin();
  sw_stats->allocs++;
  if (size > sw_stats->largest_alloc) sw_stats->largest_alloc = size;
  if (failed) sw_stats->failures++;
  sw_stats_end();
}

/* The host-located twin of a device allocation's properties: a fresh one, keeping only the
 * shareable handle types. The program's own flags (RDMA capability, usage, compression) are device
 * properties: with them the driver (580, H100) answered CUDA_ERROR_INVALID_VALUE for the props
 * PyTorch's expandable segments and XLA pass (bench/results/2026-12-06-clients, first run). */
static void host_prop(CUmemAllocationProp *hp, const CUmemAllocationProp *prop, int dev) {
  memset(hp, 0, sizeof *hp);
  hp->type = CU_MEM_ALLOCATION_TYPE_PINNED;
  hp->requestedHandleTypes = prop->requestedHandleTypes;
  hp->location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  hp->location.id = sw_devs[dev].numa;
}

static CUresult create_host(cuMemCreate_t real, CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                            unsigned long long flags, int dev) {
  if (!sw_devs[dev].vmm || sw_vmm_host_unsupported()) return CUDA_ERROR_NOT_SUPPORTED;
  CUmemAllocationProp hp;
  host_prop(&hp, prop, dev);
  CUresult r = real(h, size, &hp, flags);
  if (r != CUDA_SUCCESS && r != CUDA_ERROR_OUT_OF_MEMORY && hp.requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE) {
    /* Shareable handle types may not exist for host memory here: such a handle cannot be exported
     * (cuMemExportToShareableHandle answers the driver's error), but the program computes on. */
    hp.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
    r = real(h, size, &hp, flags);
    if (r == CUDA_SUCCESS) SW_DEBUG("cuMemCreate on host memory without shareable handle types (%d)", (int)prop->requestedHandleTypes);
  }
  if (r != CUDA_SUCCESS && r != CUDA_ERROR_OUT_OF_MEMORY) {
    SW_WARN("host allocations through CUDA VMM are not supported here (%d): the program's cuMemCreate stays on the device", r);
    sw_note_vmm_host_unsupported();
    r = CUDA_ERROR_NOT_SUPPORTED; /* the caller asks the device, as without the shim */
  }
  return r;
}

/* A handle past the budget with room left in it: VRAM head + host tail under one handle of the shim's.
 * CUDA_ERROR_NOT_SUPPORTED when it does not apply (or could not be made: the caller goes on whole). */
static CUresult create_split(cuMemCreate_t real, CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                             unsigned long long flags, int dev) {
  uint64_t gran = sw_devs[dev].gran;
  /* Only handles larger than the reserve: a pool's pages (PyTorch, llama.cpp) are placed whole. */
  if (!sw_devs[dev].vmm || sw_vmm_host_unsupported() || size % gran || size <= sw_cfg.reserve) return CUDA_ERROR_NOT_SUPPORTED;
  pthread_mutex_lock(&sw_lock);
  uint64_t head = sw_round_down(sw_avail_locked(dev), gran), tail = size > head ? size - head : 0;
  int ok = head >= gran && tail >= gran && sw_host_fits_locked(tail);
  if (ok) sw_devs[dev].vram_used += head, sw_host_used += tail;
  pthread_mutex_unlock(&sw_lock);
  if (!ok) return CUDA_ERROR_NOT_SUPPORTED;
  struct handle_rec *rec = calloc(1, sizeof *rec);
  CUmemGenericAllocationHandle hh = 0, th = 0;
  CUresult r = rec ? real(&hh, head, prop, flags) : CUDA_ERROR_OUT_OF_MEMORY;
  if (r == CUDA_SUCCESS) {
    CUmemAllocationProp hp;
    host_prop(&hp, prop, dev);
    r = real(&th, tail, &hp, flags);
    if (r != CUDA_SUCCESS && hp.requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE) {
      hp.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
      r = real(&th, tail, &hp, flags);
    }
    if (r != CUDA_SUCCESS) sw_drv.cuMemRelease(hh);
  }
  pthread_mutex_lock(&sw_lock);
  if (r != CUDA_SUCCESS) {
    sw_devs[dev].vram_used -= head, sw_host_used -= tail;
  } else {
    *rec = (struct handle_rec){.h = SPLIT_TAG | (uintptr_t)rec, .dev = dev, .vram = head, .host = tail, .refs = 1,
                               .split = 1, .head_h = hh, .tail_h = th, .prop = *prop};
    handle_insert_locked(rec);
    count_alloc_locked(size, 0);
    struct sw_rec acct = {.dev = dev, .size = size, .vram = head, .host = tail, .kind = SW_K_VMM};
    sw_commit_locked(&acct);
    sw_stats_begin();
    sw_stats->splits++;
    sw_stats_end();
  }
  pthread_mutex_unlock(&sw_lock);
  if (r != CUDA_SUCCESS) {
    free(rec);
    SW_DEBUG("cuMemCreate %.1f MiB on device %d: split %.1f + %.1f MiB failed (%d), placing it whole", sw_mib(size), dev,
             sw_mib(head), sw_mib(tail), r);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  *h = rec->h;
  SW_DEBUG("cuMemCreate %.1f MiB on device %d -> split over the budget: %.1f MiB VRAM + %.1f MiB host (handle 0x%llx)",
           sw_mib(size), dev, sw_mib(head), sw_mib(tail), rec->h);
  return CUDA_SUCCESS;
}

CUresult sw_vmm_create(cuMemCreate_t real, CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                       unsigned long long flags) {
  /* Host locations, other types and bad input: the program asked for exactly that; CUDA answers. */
  if (!h || !prop || !size || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop->location.id < 0 ||
      prop->location.id >= SW_MAX_DEVICES)
    return real(h, size, prop, flags);
  __atomic_store_n(&seen, 1, __ATOMIC_RELEASE);
  int dev = prop->location.id;
  /* The budget is read from the device's free memory, in its context; without one active the device
   * answers (uncounted). */
  if (!sw_dev_init_any(dev)) return real(h, size, prop, flags);
  pthread_mutex_lock(&sw_lock);
  uint64_t avail = sw_avail_locked(dev);
  pthread_mutex_unlock(&sw_lock);
  if (size > avail && create_split(real, h, size, prop, flags, dev) == CUDA_SUCCESS) return CUDA_SUCCESS;
  struct handle_rec *rec = calloc(1, sizeof *rec);
  if (!rec) return CUDA_ERROR_OUT_OF_MEMORY;
  uint64_t host_bytes = sw_round_up(size, sw_devs[dev].gran);
  CUresult r = CUDA_ERROR_OUT_OF_MEMORY;
  const char *why = "";
  for (int force_host = 0; force_host < 2; force_host++) {
    int in_reserve = 0;
    pthread_mutex_lock(&sw_lock);
    /* No min spill size here: a growing pool (PyTorch expandable segments) maps many small handles,
     * and past the budget every one of them belongs in host memory. */
    int where = sw_decide_whole_locked(dev, size, host_bytes, force_host, 0, &in_reserve);
    pthread_mutex_unlock(&sw_lock);
    if (where == SW_WHOLE_REFUSED) {
      why = "over the host limit";
      break;
    }
    if (where == SW_WHOLE_VRAM) r = real(h, size, prop, flags);
    else if ((r = create_host(real, h, size, prop, flags, dev)) == CUDA_ERROR_NOT_SUPPORTED) {
      /* No host VMM: the device decides, as without the shim. */
      pthread_mutex_lock(&sw_lock);
      sw_host_used -= host_bytes;
      sw_devs[dev].vram_used += size;
      pthread_mutex_unlock(&sw_lock);
      where = SW_WHOLE_VRAM;
      r = real(h, size, prop, flags);
    }
    struct sw_rec acct = {.dev = dev, .size = size, .vram = where == SW_WHOLE_VRAM ? size : 0,
                          .host = where == SW_WHOLE_HOST ? host_bytes : 0, .kind = where == SW_WHOLE_HOST ? SW_K_VMM : SW_K_VRAM,
                          .in_reserve = in_reserve};
    if (r == CUDA_SUCCESS) {
      *rec = (struct handle_rec){.h = *h, .dev = dev, .vram = acct.vram, .host = acct.host, .in_reserve = in_reserve, .refs = 1};
      pthread_mutex_lock(&sw_lock);
      handle_insert_locked(rec);
      count_alloc_locked(size, 0);
      sw_commit_locked(&acct);
      pthread_mutex_unlock(&sw_lock);
      SW_DEBUG("cuMemCreate %.1f MiB on device %d -> %s (handle 0x%llx)", sw_mib(size), dev,
               rec->host ? (force_host ? "host memory, the device refused it" : "host memory, over the budget")
                         : "VRAM, fits the budget", rec->h);
      return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&sw_lock);
    sw_unreserve_locked(&acct);
    pthread_mutex_unlock(&sw_lock);
    why = where == SW_WHOLE_HOST ? "host memory refused" : "the device refused it";
    if (where != SW_WHOLE_VRAM || r != CUDA_ERROR_OUT_OF_MEMORY) break; /* VRAM out of memory: try host */
  }
  free(rec);
  pthread_mutex_lock(&sw_lock);
  count_alloc_locked(size, 1);
  pthread_mutex_unlock(&sw_lock);
  SW_INFO("cuMemCreate %.1f MiB on device %d: failed (%d, %s)", sw_mib(size), dev, r, why);
  return r;
}

CUresult sw_vmm_release(cuMemRelease_t real, CUmemGenericAllocationHandle h) {
  if (h & SPLIT_TAG) {
    pthread_mutex_lock(&sw_lock);
    struct handle_rec *hr = handle_find_locked(h);
    CUmemGenericAllocationHandle parts[2] = {0, 0};
    int ok = hr && hr->refs > 0;
    if (ok && --hr->refs == 0) {
      parts[0] = hr->head_h, parts[1] = hr->tail_h; /* the mappings keep the memory */
      if (hr->maps == 0) handle_drop_locked(hr);
    }
    pthread_mutex_unlock(&sw_lock);
    for (int i = 0; i < 2; i++)
      if (parts[i]) real(parts[i]);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  }
  CUresult r = real(h);
  if (r != CUDA_SUCCESS) return r;
  pthread_mutex_lock(&sw_lock);
  struct handle_rec *hr = handle_find_locked(h);
  if (hr && hr->refs > 0 && --hr->refs == 0 && hr->maps == 0) handle_drop_locked(hr);
  pthread_mutex_unlock(&sw_lock);
  return r;
}

CUresult sw_vmm_retain(cuMemRetainAllocationHandle_t real, CUmemGenericAllocationHandle *h, void *addr) {
  CUresult r = real(h, addr);
  if (r != CUDA_SUCCESS || !h) return r;
  pthread_mutex_lock(&sw_lock);
  struct handle_rec *hr = handle_find_locked(*h);
  CUmemGenericAllocationHandle part = 0;
  if (!hr && (hr = split_of_part_locked(*h))) part = *h, *h = hr->h; /* a part of a split: answer the whole */
  if (hr) hr->refs++;
  pthread_mutex_unlock(&sw_lock);
  if (part && sw_drv.cuMemRelease) sw_drv.cuMemRelease(part); /* the shim holds the parts itself */
  return r;
}

CUresult sw_vmm_map(cuMemMap_t real, CUdeviceptr va, size_t size, size_t offset, CUmemGenericAllocationHandle h,
                    unsigned long long flags) {
  CUresult r;
  if (h & SPLIT_TAG) {
    pthread_mutex_lock(&sw_lock);
    struct handle_rec *hr = handle_find_locked(h);
    int ok = hr && hr->refs > 0 && !offset && size == hr->vram + hr->host;
    CUmemGenericAllocationHandle hh = ok ? hr->head_h : 0, th = ok ? hr->tail_h : 0;
    uint64_t head = ok ? hr->vram : 0, tail = ok ? hr->host : 0;
    pthread_mutex_unlock(&sw_lock);
    if (!ok) return CUDA_ERROR_INVALID_VALUE; /* a split handle is mapped whole */
    if ((r = real(va, head, 0, hh, flags)) != CUDA_SUCCESS) return r;
    if ((r = real(va + head, tail, 0, th, flags)) != CUDA_SUCCESS) {
      sw_drv.cuMemUnmap(va, head);
      return r;
    }
  } else if ((r = real(va, size, offset, h, flags)) != CUDA_SUCCESS) {
    return r;
  }
  struct map_rec *m = malloc(sizeof *m);
  pthread_mutex_lock(&sw_lock);
  struct handle_rec *hr = handle_find_locked(h);
  if (hr && m) {
    m->va = va, m->size = size, m->hr = hr;
    m->next = maps[vb(va)];
    maps[vb(va)] = m;
    hr->maps++;
    m = NULL;
  }
  pthread_mutex_unlock(&sw_lock);
  free(m);
  return r;
}

CUresult sw_vmm_unmap(cuMemUnmap_t real, CUdeviceptr va, size_t size) {
  CUresult r = real(va, size);
  if (r != CUDA_SUCCESS) {
    /* A split handle's mapping is two driver mappings: where the driver wants one call per mapping,
     * the program's unmap of exactly that mapping is made as two. */
    uint64_t head = 0;
    pthread_mutex_lock(&sw_lock);
    for (struct map_rec *m = maps[vb(va)]; m; m = m->next)
      if (m->va == va && m->size == size && m->hr->split) head = m->hr->vram;
    pthread_mutex_unlock(&sw_lock);
    if (!head || real(va, head) != CUDA_SUCCESS) return r;
    if ((r = real(va + head, size - head)) != CUDA_SUCCESS) return r;
  }
  pthread_mutex_lock(&sw_lock);
  /* Every mapping inside [va, va + size) is gone; mappings start at granularity multiples. */
  for (size_t i = 0; i < NB; i++)
    for (struct map_rec **pp = &maps[i]; *pp;) {
      struct map_rec *m = *pp;
      if (m->va >= va && m->va + m->size <= va + size) {
        *pp = m->next;
        if (--m->hr->maps == 0 && m->hr->refs == 0) handle_drop_locked(m->hr);
        free(m);
      } else {
        pp = &m->next;
      }
    }
  pthread_mutex_unlock(&sw_lock);
  return r;
}

/* A device allocation's granularity is also made a multiple of the host one, so any handle the
 * program sizes for the device can be created on the host instead. */
void sw_vmm_granularity(const CUmemAllocationProp *prop, size_t *g) {
  if (!prop || !g || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop->location.id < 0 ||
      prop->location.id >= SW_MAX_DEVICES || !sw_drv.cuMemGetAllocationGranularity)
    return;
  CUmemAllocationProp hp;
  int numa = -1;
  if (sw_drv.cuDeviceGetAttribute) sw_drv.cuDeviceGetAttribute(&numa, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, prop->location.id);
  host_prop(&hp, prop, prop->location.id);
  hp.location.id = numa < 0 ? 0 : numa;
  size_t hg = 0;
  if (sw_drv.cuMemGetAllocationGranularity(&hg, &hp, CU_MEM_ALLOC_GRANULARITY_MINIMUM) == CUDA_SUCCESS && hg > *g &&
      hg % *g == 0)
    *g = hg;
}

CUresult sw_vmm_export(cuMemExportToShareableHandle_t real, void *out, CUmemGenericAllocationHandle h,
                       CUmemAllocationHandleType type, unsigned long long flags) {
  if (h & SPLIT_TAG) return CUDA_ERROR_NOT_SUPPORTED; /* two physical allocations have no one shareable handle */
  return real(out, h, type, flags);
}

CUresult sw_vmm_properties(cuMemGetAllocationPropertiesFromHandle_t real, CUmemAllocationProp *prop,
                           CUmemGenericAllocationHandle h) {
  if (!(h & SPLIT_TAG)) return real(prop, h);
  pthread_mutex_lock(&sw_lock);
  struct handle_rec *hr = handle_find_locked(h);
  if (hr && prop) *prop = hr->prop;
  pthread_mutex_unlock(&sw_lock);
  return hr && prop ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* A forked child has no CUDA allocations (sw_lock held). */
void sw_vmm_forget_locked(void) {
  memset(handles, 0, sizeof handles);
  memset(maps, 0, sizeof maps);
}
