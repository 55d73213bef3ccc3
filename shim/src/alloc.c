/*
 * Placement: the budget and reserve per device, the decision VRAM / split / host, the host
 * backings (CUDA VMM, mapped pinned memory, the /dev/spillway pool), the table of live allocations,
 * frees, and the memory the hooks report.
 */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include("uapi/spillway.h")
#include "uapi/spillway.h"
#define SW_HAVE_KMOD 1
#endif
#endif
#ifndef SW_HAVE_KMOD
#define SW_HAVE_KMOD 0
#endif

enum { SW_K_VRAM = 0, SW_K_VMM, SW_K_MAPPED, SW_K_KMOD };
static const char *kind_name[] = {"vram", "vmm", "mapped", "kmod"};

struct sw_rec {
  struct sw_rec *next;
  CUdeviceptr ptr;
  uint64_t size; /* requested bytes */
  uint64_t vram; /* device bytes it holds */
  uint64_t host; /* host bytes it holds */
  void *hostp;   /* host address (mapped, kmod) */
  int kind, dev, fd;
  int in_reserve; /* placed whole in the reserve after the budget was spent */
};

struct sw_dev {
  int inited;
  int has_budget_override;
  uint64_t budget_override;
  uint64_t budget;
  uint64_t vram_used; /* shim-placed VRAM bytes, including reservations in flight */
  uint64_t gran;
  int numa;
  int vmm;
  uint64_t reserve_live; /* live allocations placed whole in the reserve */
};

#define NBUCKETS 65536
static struct sw_rec *table[NBUCKETS];
static struct sw_dev devs[SW_MAX_DEVICES];
static uint64_t host_used; /* host bytes, including reservations in flight */
static int vmm_host_unsupported;

static inline size_t bucket(CUdeviceptr p) { return (size_t)(((p >> 12) * 0x9E3779B97F4A7C15ull) >> 48); }
static inline uint64_t round_up(uint64_t x, uint64_t g) { return (x + g - 1) / g * g; }
static inline uint64_t round_down(uint64_t x, uint64_t g) { return x / g * g; }
static double mib(uint64_t b) { return (double)b / 1048576.0; }

/* Callers hold sw_lock. */
static void table_insert(struct sw_rec *r) {
  size_t b = bucket(r->ptr);
  r->next = table[b];
  table[b] = r;
}
static struct sw_rec *table_remove(CUdeviceptr p) {
  for (struct sw_rec **pp = &table[bucket(p)]; *pp; pp = &(*pp)->next)
    if ((*pp)->ptr == p) {
      struct sw_rec *r = *pp;
      *pp = r->next;
      return r;
    }
  return NULL;
}

int sw_current_device(void) {
  CUdevice d;
  if (!sw_drv.cuCtxGetDevice || sw_drv.cuCtxGetDevice(&d) != CUDA_SUCCESS) return -1;
  return d >= 0 && d < SW_MAX_DEVICES ? d : -1;
}

static void publish_budget_locked(int dev) {
  if (dev == 0 || !devs[0].inited) sw_stats->vram_budget = devs[dev].budget;
}

/* Budget, granularity and NUMA node of a device; needs its context current. */
static void dev_init(int dev) {
  if (__atomic_load_n(&devs[dev].inited, __ATOMIC_ACQUIRE)) return;
  size_t fr = 0, tot = 0;
  cuMemGetInfo_t getinfo = (cuMemGetInfo_t)sw_real_of("cuMemGetInfo_v2", SW_LIB_DRIVER);
  if (getinfo) getinfo(&fr, &tot);
  uint64_t gran = SW_GRANULE;
  CUmemAllocationProp prop;
  memset(&prop, 0, sizeof prop);
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  int vmm = 0, numa = -1;
  if (sw_drv.cuDeviceGetAttribute) {
    sw_drv.cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);
    sw_drv.cuDeviceGetAttribute(&numa, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, dev);
  }
  if (numa < 0) numa = 0;
  size_t g = 0;
  if (vmm && sw_drv.cuMemGetAllocationGranularity) {
    if (!sw_drv.cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) && g > gran) gran = g;
    prop.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
    prop.location.id = numa;
    if (!sw_drv.cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) && g > gran) gran = g;
  }
  pthread_mutex_lock(&sw_lock);
  struct sw_dev *d = &devs[dev];
  if (!d->inited) {
    if (d->has_budget_override) d->budget = d->budget_override;
    else if (sw_cfg.has_budget) d->budget = sw_cfg.budget;
    else d->budget = fr > sw_cfg.reserve ? fr - sw_cfg.reserve : 0;
    d->gran = gran;
    d->numa = numa;
    d->vmm = vmm && sw_drv.cuMemCreate && sw_drv.cuMemAddressReserve && sw_drv.cuMemMap && sw_drv.cuMemSetAccess;
    sw_stats_begin();
    publish_budget_locked(dev);
    sw_stats_end();
    __atomic_store_n(&d->inited, 1, __ATOMIC_RELEASE);
    SW_INFO("device %d: free %.1f MiB of %.1f MiB, budget %.1f MiB (%s), reserve %.1f MiB, min spill %.1f MiB, "
            "host limit %.1f MiB, VMM %s, host NUMA node %d, granularity %.1f MiB",
            dev, mib(fr), mib(tot), mib(d->budget),
            d->has_budget_override || sw_cfg.has_budget ? "set" : "free minus reserve", mib(sw_cfg.reserve),
            mib(sw_cfg.min_spill), mib(sw_cfg.host_limit), d->vmm ? "yes" : "no", numa, mib(gran));
  }
  pthread_mutex_unlock(&sw_lock);
}

int sw_set_budget(int dev, uint64_t bytes) {
  if (dev < -1 || dev >= SW_MAX_DEVICES) return -EINVAL;
  pthread_mutex_lock(&sw_lock);
  for (int i = 0; i < SW_MAX_DEVICES; i++) {
    if (dev != -1 && i != dev) continue;
    devs[i].has_budget_override = 1;
    devs[i].budget_override = bytes;
    if (devs[i].inited) devs[i].budget = bytes;
  }
  sw_stats_begin();
  if (dev <= 0) sw_stats->vram_budget = bytes;
  sw_stats_end();
  pthread_mutex_unlock(&sw_lock);
  SW_INFO("budget of %s set to %.1f MiB", dev == -1 ? "all devices" : "one device", mib(bytes));
  return 0;
}

/* ---- the /dev/spillway pool ---- */
#if SW_HAVE_KMOD
static int kmod_fd = -2; /* -2: not tried yet; -1: unavailable */
static int kmod_open(void) {
  int fd = __atomic_load_n(&kmod_fd, __ATOMIC_ACQUIRE);
  if (fd != -2) return fd;
  fd = open(sw_cfg.kmod_device, O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    struct spillway_version v;
    memset(&v, 0, sizeof v);
    if (ioctl(fd, SPILLWAY_IOC_VERSION, &v) || SPILLWAY_UAPI_MAJOR(v.version) != SPILLWAY_UAPI_VERSION_MAJOR) {
      SW_ERROR("%s: module speaks uapi version 0x%x, the shim 0x%x: not using it", sw_cfg.kmod_device, v.version,
               SPILLWAY_UAPI_VERSION);
      close(fd);
      fd = -1;
    }
  } else if (sw_cfg.backing == SPILLWAY_BACKING_KMOD) {
    SW_ERROR("SPILLWAY_BACKING=kmod but %s cannot be opened (%s): spills will fail", sw_cfg.kmod_device,
             strerror(errno));
  }
  int expected = -2;
  if (!__atomic_compare_exchange_n(&kmod_fd, &expected, fd, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    if (fd >= 0) close(fd);
    fd = expected;
  }
  return fd;
}
#else
static int kmod_open(void) {
  static int warned;
  if (sw_cfg.backing == SPILLWAY_BACKING_KMOD && !__atomic_exchange_n(&warned, 1, __ATOMIC_ACQ_REL))
    SW_ERROR("SPILLWAY_BACKING=kmod but this shim was built without kmod/include/uapi/spillway.h: spills will fail");
  return -1;
}
#endif

static uint64_t kmod_round(uint64_t size) {
#if SW_HAVE_KMOD
  return size > UINT64_MAX - SPILLWAY_CHUNK_SIZE ? 0 : round_up(size, SPILLWAY_CHUNK_SIZE);
#else
  return size;
#endif
}

static CUresult kmod_alloc(uint64_t bytes, struct sw_rec *rec) {
#if SW_HAVE_KMOD
  int dfd = kmod_open();
  if (dfd < 0) return CUDA_ERROR_OUT_OF_MEMORY;
  struct spillway_alloc a;
  memset(&a, 0, sizeof a);
  a.size = bytes;
  a.flags = SPILLWAY_ALLOC_FALLBACK;
  if (ioctl(dfd, SPILLWAY_IOC_ALLOC, &a)) {
    SW_WARN("%s: ALLOC of %.1f MiB failed: %s", sw_cfg.kmod_device, mib(bytes), strerror(errno));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, 0);
  if (p == MAP_FAILED) {
    SW_WARN("mmap of a %.1f MiB pool buffer failed: %s", mib(bytes), strerror(errno));
    close(a.fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  CUresult r = sw_drv.cuMemHostRegister ? sw_drv.cuMemHostRegister(p, bytes, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP)
                                        : CUDA_ERROR_NOT_SUPPORTED;
  CUdeviceptr d = 0;
  if (r == CUDA_SUCCESS) {
    r = sw_drv.cuMemHostGetDevicePointer ? sw_drv.cuMemHostGetDevicePointer(&d, p, 0) : CUDA_ERROR_NOT_SUPPORTED;
    if (r != CUDA_SUCCESS) sw_drv.cuMemHostUnregister(p);
  }
  if (r != CUDA_SUCCESS) {
    SW_WARN("cuMemHostRegister of a %.1f MiB pool buffer failed (%d)", mib(bytes), r);
    munmap(p, bytes);
    close(a.fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  rec->ptr = d, rec->hostp = p, rec->fd = a.fd;
  return CUDA_SUCCESS;
#else
  (void)bytes, (void)rec;
  return CUDA_ERROR_OUT_OF_MEMORY;
#endif
}

/* ---- CUDA VMM: one virtual range, head in VRAM, tail in host memory ---- */
static CUresult vmm_alloc(int dev, uint64_t head, uint64_t tail, CUdeviceptr *out, int *head_failed, int *host_unsupported) {
  uint64_t span = head + tail;
  CUdeviceptr va = 0;
  CUresult r = sw_drv.cuMemAddressReserve(&va, span, devs[dev].gran, 0, 0);
  if (r != CUDA_SUCCESS) return r;
  CUmemAllocationProp prop;
  memset(&prop, 0, sizeof prop);
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  CUmemGenericAllocationHandle h;
  int head_mapped = 0, tail_mapped = 0;
  if (head) {
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    if ((r = sw_drv.cuMemCreate(&h, head, &prop, 0)) != CUDA_SUCCESS) {
      *head_failed = 1;
      goto fail;
    }
    r = sw_drv.cuMemMap(va, head, 0, h, 0);
    sw_drv.cuMemRelease(h); /* the mapping keeps the memory */
    if (r != CUDA_SUCCESS) goto fail;
    head_mapped = 1;
  }
  if (tail) {
    prop.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
    prop.location.id = devs[dev].numa;
    if ((r = sw_drv.cuMemCreate(&h, tail, &prop, 0)) != CUDA_SUCCESS) {
      if (r != CUDA_ERROR_OUT_OF_MEMORY) *host_unsupported = 1;
      goto fail;
    }
    r = sw_drv.cuMemMap(va + head, tail, 0, h, 0);
    sw_drv.cuMemRelease(h);
    if (r != CUDA_SUCCESS) goto fail;
    tail_mapped = 1;
  }
  CUmemAccessDesc acc;
  memset(&acc, 0, sizeof acc);
  acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  acc.location.id = dev;
  acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  if ((r = sw_drv.cuMemSetAccess(va, span, &acc, 1)) != CUDA_SUCCESS) goto fail;
  *out = va;
  return CUDA_SUCCESS;
fail:
  if (head_mapped) sw_drv.cuMemUnmap(va, head);
  if (tail_mapped) sw_drv.cuMemUnmap(va + head, tail);
  sw_drv.cuMemAddressFree(va, span);
  return r;
}

static CUresult mapped_alloc(uint64_t size, struct sw_rec *rec) {
  if (!sw_drv.cuMemHostAlloc || !sw_drv.cuMemHostGetDevicePointer) return CUDA_ERROR_NOT_SUPPORTED;
  void *p = NULL;
  CUresult r = sw_drv.cuMemHostAlloc(&p, size, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP);
  if (r != CUDA_SUCCESS) return r;
  CUdeviceptr d = 0;
  if ((r = sw_drv.cuMemHostGetDevicePointer(&d, p, 0)) != CUDA_SUCCESS) {
    sw_drv.cuMemFreeHost(p);
    return r;
  }
  rec->ptr = d, rec->hostp = p;
  return CUDA_SUCCESS;
}

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

static int kmod_usable(void) { return kmod_open() >= 0; }
static int vmm_usable(int dev) { return devs[dev].vmm && !__atomic_load_n(&vmm_host_unsupported, __ATOMIC_ACQUIRE); }

/* Backing for the host part: splits need VMM; whole-host allocations prefer the module's pool. */
static int choose_backing(int dev, int split) {
  switch (sw_cfg.backing) {
    case SPILLWAY_BACKING_KMOD: return SW_K_KMOD;
    case SPILLWAY_BACKING_VMM: return SW_K_VMM;
    case SPILLWAY_BACKING_MAPPED: return SW_K_MAPPED;
    default:
      if (split && vmm_usable(dev)) return SW_K_VMM;
      if (kmod_usable()) return SW_K_KMOD;
      return vmm_usable(dev) ? SW_K_VMM : SW_K_MAPPED;
  }
}

static int host_tier(int kind) {
  return kind == SW_K_VMM ? SPILLWAY_TIER_HOST_VMM : kind == SW_K_KMOD ? SPILLWAY_TIER_HOST_KMOD : SPILLWAY_TIER_HOST_MAPPED;
}

/* Account a placed allocation in the stats (sw_lock held). */
static void commit_locked(const struct sw_rec *r) {
  sw_stats_begin();
  if (r->vram) sw_stats_tier_add(SPILLWAY_TIER_VRAM, r->vram);
  if (r->host) {
    sw_stats_tier_add(host_tier(r->kind), r->host);
    sw_stats->spills++;
    if (r->host > sw_stats->largest_spill) sw_stats->largest_spill = r->host;
    if (r->vram) sw_stats->splits++;
  }
  sw_stats_end();
}

int sw_alloc(size_t size, const struct sw_vram_fn *v, CUdeviceptr *out) {
  if (v->api >= SW_API_RT && sw_drv.cuCtxGetCurrent) {
    /* The runtime makes its context current lazily; the shim's own driver calls need it now. */
    CUcontext ctx = NULL;
    if (sw_drv.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
      cudaFree_t rfree = (cudaFree_t)sw_real_of("cudaFree", SW_LIB_RUNTIME);
      if (rfree) sw_tls_depth++, rfree(NULL), sw_tls_depth--;
    }
  }
  int dev = sw_current_device();
  if (dev < 0) return vram_call(v, out, size); /* no context: let CUDA answer */
  dev_init(dev);
  /* The table entry first: an allocation made but not tracked could never be freed or uncounted. */
  struct sw_rec *heap = malloc(sizeof *heap);
  if (!heap) {
    SW_ERROR("out of host memory for the allocation table: %.1f MiB allocation refused", mib(size));
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
  int action = rule ? rule->action : SW_ACT_AUTO;
  int force_host = 0, last_was_vram = 0;
  int last = CUDA_ERROR_OUT_OF_MEMORY;

  for (int attempt = 0; attempt < 3; attempt++) {
    struct sw_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.size = size, rec.dev = dev, rec.fd = -1;
    const char *why;
    pthread_mutex_lock(&sw_lock);
    struct sw_dev *d = &devs[dev];
    uint64_t avail = d->budget > d->vram_used ? d->budget - d->vram_used : 0;
    /* With the default budget (free VRAM minus the reserve), the reserve is what late allocations
     * (KV cache, compute buffers) get whole once the big early ones have spent the budget: spilling
     * them costs far more than spilling weights. Only allocations no larger than the reserve use it,
     * and only a few at once (SPILLWAY_RESERVE_ALLOCS): a runtime that loads weights tensor by
     * tensor (PyTorch) would otherwise fill the reserve with weights and leave no VRAM for the
     * small allocations and activations that follow. */
    uint64_t in_reserve = 0;
    if (!d->has_budget_override && !sw_cfg.has_budget && size <= sw_cfg.reserve && d->reserve_live < sw_cfg.reserve_allocs) {
      uint64_t limit = sw_cfg.reserve > UINT64_MAX - d->budget ? UINT64_MAX : d->budget + sw_cfg.reserve;
      in_reserve = limit > d->vram_used ? limit - d->vram_used : 0;
    }
    int to_reserve = action == SW_ACT_AUTO && size > avail && size >= sw_cfg.min_spill && size <= in_reserve;
    if (!force_host && (action == SW_ACT_VRAM || (action == SW_ACT_AUTO && (size < sw_cfg.min_spill || size <= avail)) ||
                        to_reserve || (action == SW_ACT_HEAD && rule->head >= size))) {
      rec.kind = SW_K_VRAM;
      rec.vram = size;
      rec.in_reserve = to_reserve;
      why = action == SW_ACT_VRAM ? "placement rule" : size < sw_cfg.min_spill ? "below min spill"
            : to_reserve ? "late allocation, fits the reserve" : "fits the budget";
    } else {
      uint64_t want_head = force_host || action == SW_ACT_HOST ? 0 : action == SW_ACT_HEAD ? rule->head : avail;
      rec.kind = choose_backing(dev, want_head >= d->gran);
      if (rec.kind == SW_K_VMM) {
        if (size > UINT64_MAX - d->gran) goto too_big;
        uint64_t span = round_up(size, d->gran);
        rec.vram = round_down(want_head < span ? want_head : span, d->gran);
        rec.host = span - rec.vram;
      } else {
        rec.host = rec.kind == SW_K_KMOD ? kmod_round(size) : size;
        if (!rec.host) goto too_big;
      }
      why = force_host ? "VRAM allocation failed" : rule ? "placement rule" : "over the budget";
      if (rec.host > sw_cfg.host_limit || host_used > sw_cfg.host_limit - rec.host) {
        SW_INFO("alloc %.1f MiB on device %d: needs %.1f MiB of host memory, %.1f MiB of the %.1f MiB host limit in use: out of memory",
                mib(size), dev, mib(rec.host), mib(host_used), mib(sw_cfg.host_limit));
        pthread_mutex_unlock(&sw_lock);
        last_was_vram = 0;
        break;
      }
    }
    d->vram_used += rec.vram;
    d->reserve_live += rec.in_reserve;
    host_used += rec.host;
    uint64_t budget = d->budget, used = d->vram_used;
    pthread_mutex_unlock(&sw_lock);

    int r, head_failed = 0, host_unsupported = 0;
    if (rec.kind == SW_K_VRAM) r = vram_call(v, &rec.ptr, size);
    else if (rec.kind == SW_K_VMM)
      r = d->vmm ? vmm_alloc(dev, rec.vram, rec.host, &rec.ptr, &head_failed, &host_unsupported) : CUDA_ERROR_NOT_SUPPORTED;
    else if (rec.kind == SW_K_MAPPED) r = mapped_alloc(size, &rec);
    else r = kmod_alloc(rec.host, &rec);

    if (r == CUDA_SUCCESS) {
      pthread_mutex_lock(&sw_lock);
      *heap = rec;
      table_insert(heap);
      commit_locked(heap);
      pthread_mutex_unlock(&sw_lock);
      SW_DEBUG("alloc %.1f MiB on device %d (#%llu) -> %s: %.1f MiB VRAM + %.1f MiB host (%s) at 0x%llx; "
               "VRAM in use %.1f of %.1f MiB budget",
               mib(size), dev, (unsigned long long)index, why, mib(rec.vram), mib(rec.host), kind_name[rec.kind],
               (unsigned long long)rec.ptr, mib(used), mib(budget));
      *out = rec.ptr;
      return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&sw_lock);
    d->vram_used -= rec.vram;
    d->reserve_live -= rec.in_reserve;
    host_used -= rec.host;
    if (rec.kind != SW_K_VRAM) {
      sw_stats_begin();
      sw_stats->host_failures++;
      sw_stats_end();
    }
    pthread_mutex_unlock(&sw_lock);
    last = r;
    last_was_vram = rec.kind == SW_K_VRAM;
    SW_DEBUG("alloc %.1f MiB on device %d as %s (%.1f MiB VRAM + %.1f MiB host) failed: %d", mib(size), dev,
             kind_name[rec.kind], mib(rec.vram), mib(rec.host), r);
    if (rec.kind == SW_K_VRAM) {
      /* The budget said yes but the device said no (VRAM is full, e.g. small allocations used up the
       * reserve): spill it, small or not, unless a rule pinned it to VRAM. */
      if (r != CUDA_ERROR_OUT_OF_MEMORY || action == SW_ACT_VRAM) break;
      force_host = 1;
    } else if (rec.kind == SW_K_VMM && host_unsupported && sw_cfg.backing == SPILLWAY_BACKING_AUTO) {
      SW_WARN("host allocations through CUDA VMM are not supported here (%d): using mapped pinned memory", r);
      __atomic_store_n(&vmm_host_unsupported, 1, __ATOMIC_RELEASE);
      pthread_mutex_lock(&sw_lock);
      sw_stats_begin();
      sw_stats->flags |= SPILLWAY_STATS_FLAG_VMM_HOST_UNSUPPORTED;
      sw_stats_end();
      pthread_mutex_unlock(&sw_lock);
    } else if (rec.kind == SW_K_VMM && head_failed) {
      force_host = 1;
    } else {
      break;
    }
  }
  if (0) {
  too_big:
    pthread_mutex_unlock(&sw_lock);
    last_was_vram = 0;
  }
  free(heap);
  pthread_mutex_lock(&sw_lock);
  sw_stats_begin();
  sw_stats->failures++;
  sw_stats_end();
  pthread_mutex_unlock(&sw_lock);
  SW_INFO("alloc %.1f MiB on device %d: failed (%d)", mib(size), dev, last);
  /* Host backing failures are out of memory, as CUDA would say; VRAM errors pass through as they are. */
  return last_was_vram ? last : CUDA_ERROR_OUT_OF_MEMORY;
}

static void release_locked(struct sw_rec *r) {
  devs[r->dev].vram_used -= r->vram;
  devs[r->dev].reserve_live -= r->in_reserve;
  host_used -= r->host;
  sw_stats_begin();
  if (r->vram) sw_stats_tier_sub(SPILLWAY_TIER_VRAM, r->vram);
  if (r->host) sw_stats_tier_sub(host_tier(r->kind), r->host);
  sw_stats->frees++;
  sw_stats_end();
}

int sw_free(CUdeviceptr ptr, int async, CUstream stream, void **cookie) {
  if (!ptr) return SW_FREE_UNKNOWN;
  pthread_mutex_lock(&sw_lock);
  /* Out of the table before the memory goes back, so a new allocation at this address is never lost. */
  struct sw_rec *r = table_remove(ptr);
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
  if (r->kind == SW_K_VRAM) {
    *cookie = r;
    return SW_FREE_VRAM;
  }
  /* Host-backed memory may still be read by queued work: wait as cudaFree / the stream would. */
  if (async && sw_drv.cuStreamSynchronize) sw_drv.cuStreamSynchronize(stream);
  else if (sw_drv.cuCtxSynchronize) sw_drv.cuCtxSynchronize();
  if (r->kind == SW_K_VMM) {
    if (r->vram) sw_drv.cuMemUnmap(r->ptr, r->vram);
    if (r->host) sw_drv.cuMemUnmap(r->ptr + r->vram, r->host);
    sw_drv.cuMemAddressFree(r->ptr, r->vram + r->host);
  } else if (r->kind == SW_K_MAPPED) {
    sw_drv.cuMemFreeHost(r->hostp);
  } else {
    sw_drv.cuMemHostUnregister(r->hostp);
    munmap(r->hostp, r->host);
    close(r->fd);
  }
  SW_DEBUG("free 0x%llx: %.1f MiB VRAM + %.1f MiB host (%s) returned", (unsigned long long)ptr, mib(r->vram),
           mib(r->host), kind_name[r->kind]);
  pthread_mutex_lock(&sw_lock);
  release_locked(r);
  pthread_mutex_unlock(&sw_lock);
  free(r);
  return SW_FREE_DONE;
}

void sw_free_vram_result(void *cookie, int ok) {
  struct sw_rec *r = cookie;
  pthread_mutex_lock(&sw_lock);
  if (ok) release_locked(r);
  else table_insert(r); /* CUDA refused the free: the allocation lives on */
  pthread_mutex_unlock(&sw_lock);
  if (ok) {
    SW_DEBUG("free 0x%llx: %.1f MiB VRAM returned", (unsigned long long)r->ptr, mib(r->vram));
    free(r);
  }
}

static uint64_t host_used_now(void) {
  pthread_mutex_lock(&sw_lock);
  uint64_t u = host_used;
  pthread_mutex_unlock(&sw_lock);
  return u;
}

void sw_adjust_meminfo(int dev, size_t *free_b, size_t *total_b) {
  (void)dev;
  if (sw_cfg.report_mode == SPILLWAY_REPORT_VRAM) return;
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
  if (sw_cfg.report_mode == SPILLWAY_REPORT_VRAM_HOST) *total_b += sw_cfg.host_limit;
  else if (sw_cfg.report_mode == SPILLWAY_REPORT_SIZE) *total_b = sw_cfg.report_size;
}

/* A forked child has no CUDA allocations: forget the parent's (sw_lock is held by the atfork handler). */
void sw_alloc_forget_locked(void) {
  memset(table, 0, sizeof table);
  for (int i = 0; i < SW_MAX_DEVICES; i++) devs[i].vram_used = 0;
  host_used = 0;
}
