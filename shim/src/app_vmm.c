/*
 * The program's own CUDA VMM allocations (PyTorch expandable segments, llama.cpp's VMM pool, vLLM's
 * CuMemAllocator, XLA): cuMemCreate on a device is placed per handle. While it fits the budget it is
 * created as asked and counted in VRAM; past the budget (or when the device refuses it) the same
 * handle is created on the GPU's host NUMA node instead, which the program maps into its own range and
 * the GPU reads in place. The physical memory lives until the last of the handle's references (the
 * handle, retained handles, mappings) is gone, as in the driver: only then is it uncounted.
 */
#include "place.h"

#include <stdlib.h>
#include <string.h>

struct handle_rec {
  struct handle_rec *next;
  CUmemGenericAllocationHandle h;
  int dev;
  uint64_t size; /* physical bytes */
  int host;      /* placed in host memory by the shim */
  int in_reserve;
  long refs; /* the handle and retained copies */
  long maps; /* live mappings */
};
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

int sw_vmm_seen(void) { return __atomic_load_n(&seen, __ATOMIC_ACQUIRE); }

/* Memory gone back to the driver: out of the table and the counters. */
static void handle_drop_locked(struct handle_rec *r) {
  for (struct handle_rec **pp = &handles[hb(r->h)]; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  struct sw_rec acct = {.dev = r->dev, .size = r->size, .vram = r->host ? 0 : r->size, .host = r->host ? r->size : 0,
                        .kind = r->host ? SW_K_VMM : SW_K_VRAM, .in_reserve = r->in_reserve};
  sw_release_locked(&acct);
  SW_DEBUG("cuMemCreate handle 0x%llx: %.1f MiB %s returned", r->h, sw_mib(r->size), r->host ? "host" : "VRAM");
  free(r);
}

static void count_alloc_locked(uint64_t size, int failed) {
  sw_stats_begin();
  sw_stats->allocs++;
  if (size > sw_stats->largest_alloc) sw_stats->largest_alloc = size;
  if (failed) sw_stats->failures++;
  sw_stats_end();
}

/* The host-located twin of a device allocation's properties. */
static void host_prop(CUmemAllocationProp *hp, const CUmemAllocationProp *prop, int dev) {
  *hp = *prop;
  hp->location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  hp->location.id = sw_devs[dev].numa;
  hp->allocFlags.compressionType = 0; /* compression is a device-memory property */
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
  }
  return r;
}

CUresult sw_vmm_create(cuMemCreate_t real, CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                       unsigned long long flags) {
  /* Host locations, other types and bad input: the program asked for exactly that; CUDA answers. */
  if (!h || !prop || !size || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop->location.id < 0 ||
      prop->location.id >= SW_MAX_DEVICES)
    return real(h, size, prop, flags);
  __atomic_store_n(&seen, 1, __ATOMIC_RELEASE);
  int dev = prop->location.id;
  /* The budget is read from the device's free memory, which needs its context current. */
  if (!__atomic_load_n(&sw_devs[dev].inited, __ATOMIC_ACQUIRE)) {
    if (sw_current_device() != dev) return real(h, size, prop, flags);
    sw_dev_init(dev);
  }
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
      *rec = (struct handle_rec){.h = *h, .dev = dev, .size = acct.vram + acct.host, .host = where == SW_WHOLE_HOST,
                                 .in_reserve = in_reserve, .refs = 1};
      pthread_mutex_lock(&sw_lock);
      size_t b = hb(rec->h);
      rec->next = handles[b];
      handles[b] = rec;
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
  if (hr) hr->refs++;
  pthread_mutex_unlock(&sw_lock);
  return r;
}

CUresult sw_vmm_map(cuMemMap_t real, CUdeviceptr va, size_t size, size_t offset, CUmemGenericAllocationHandle h,
                    unsigned long long flags) {
  CUresult r = real(va, size, offset, h, flags);
  if (r != CUDA_SUCCESS) return r;
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
  if (r != CUDA_SUCCESS) return r;
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

/* A forked child has no CUDA allocations (sw_lock held). */
void sw_vmm_forget_locked(void) {
  memset(handles, 0, sizeof handles);
  memset(maps, 0, sizeof maps);
}
