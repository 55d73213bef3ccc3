/*
 * The placement policy: each device's budget (free VRAM minus the reserve, or set), the reserve for
 * late allocations, and the decision VRAM / split / host for one allocation. No CUDA allocation
 * happens here: the decision reserves bytes in the counters, the caller builds and commits them.
 */
#include "place.h"

#include <errno.h>
#include <string.h>

const char *const sw_kind_name[] = {"vram", "vmm", "mapped", "kmod", "managed"};
struct sw_dev sw_devs[SW_MAX_DEVICES];
uint64_t sw_host_used;
static int vmm_host_unsupported;

int sw_current_device(void) {
  CUdevice d;
  if (!sw_drv.cuCtxGetDevice || sw_drv.cuCtxGetDevice(&d) != CUDA_SUCCESS) return -1;
  return d >= 0 && d < SW_MAX_DEVICES ? d : -1;
}

static void publish_budget_locked(int dev) {
  if (dev == 0 || !sw_devs[0].inited) sw_stats->vram_budget = sw_devs[dev].budget;
}

void sw_dev_init(int dev) {
  if (__atomic_load_n(&sw_devs[dev].inited, __ATOMIC_ACQUIRE)) return;
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
  struct sw_dev *d = &sw_devs[dev];
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
            dev, sw_mib(fr), sw_mib(tot), sw_mib(d->budget),
            d->has_budget_override || sw_cfg.has_budget ? "set" : "free minus reserve", sw_mib(sw_cfg.reserve),
            sw_mib(sw_cfg.min_spill), sw_mib(sw_cfg.host_limit), d->vmm ? "yes" : "no", numa, sw_mib(gran));
  }
  pthread_mutex_unlock(&sw_lock);
}

int sw_dev_init_any(int dev) {
  if (__atomic_load_n(&sw_devs[dev].inited, __ATOMIC_ACQUIRE)) return 1;
  if (sw_current_device() == dev) {
    sw_dev_init(dev);
    return 1;
  }
  /* A cuMemCreate names its device; the caller's thread may have another device's context current,
   * or none. Read the budget in dev's primary context if the program has it active (never create one). */
  unsigned int flags = 0;
  int active = 0;
  if (!sw_drv.cuDevicePrimaryCtxGetState || !sw_drv.cuDevicePrimaryCtxRetain || !sw_drv.cuDevicePrimaryCtxRelease ||
      !sw_drv.cuCtxPushCurrent || !sw_drv.cuCtxPopCurrent || sw_drv.cuDevicePrimaryCtxGetState(dev, &flags, &active) ||
      !active)
    return 0;
  CUcontext ctx = NULL, popped = NULL;
  if (sw_drv.cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS) return 0;
  int ok = sw_drv.cuCtxPushCurrent(ctx) == CUDA_SUCCESS;
  if (ok) {
    sw_dev_init(dev);
    sw_drv.cuCtxPopCurrent(&popped);
  }
  sw_drv.cuDevicePrimaryCtxRelease(dev);
  return ok;
}

int sw_set_budget(int dev, uint64_t bytes) {
  if (dev < -1 || dev >= SW_MAX_DEVICES) return -EINVAL;
  pthread_mutex_lock(&sw_lock);
  for (int i = 0; i < SW_MAX_DEVICES; i++) {
    if (dev != -1 && i != dev) continue;
    sw_devs[i].has_budget_override = 1;
    sw_devs[i].budget_override = bytes;
    if (sw_devs[i].inited) sw_devs[i].budget = bytes;
  }
  sw_stats_begin();
  if (dev <= 0) sw_stats->vram_budget = bytes;
  sw_stats_end();
  pthread_mutex_unlock(&sw_lock);
  SW_INFO("budget of %s set to %.1f MiB", dev == -1 ? "all devices" : "one device", sw_mib(bytes));
  return 0;
}

int sw_vmm_host_unsupported(void) { return __atomic_load_n(&vmm_host_unsupported, __ATOMIC_ACQUIRE); }
int sw_vmm_usable(int dev) { return sw_devs[dev].vmm && !sw_vmm_host_unsupported(); }

void sw_note_vmm_host_unsupported(void) {
  __atomic_store_n(&vmm_host_unsupported, 1, __ATOMIC_RELEASE);
  pthread_mutex_lock(&sw_lock);
  sw_stats_begin();
  sw_stats->flags |= SPILLWAY_STATS_FLAG_VMM_HOST_UNSUPPORTED;
  sw_stats_end();
  pthread_mutex_unlock(&sw_lock);
}

uint64_t sw_avail_locked(int dev) {
  struct sw_dev *d = &sw_devs[dev];
  return d->budget > d->vram_used ? d->budget - d->vram_used : 0;
}

int sw_host_fits_locked(uint64_t bytes) {
  return bytes <= sw_cfg.host_limit && sw_host_used <= sw_cfg.host_limit - bytes;
}

/* With the default budget (free VRAM minus the reserve), the reserve is what late allocations
 * (KV cache, compute buffers) get whole once the big early ones have spent the budget: spilling
 * them costs far more than spilling weights. Only allocations no larger than the reserve use it,
 * and only a few at once (SPILLWAY_RESERVE_ALLOCS): a runtime that loads weights tensor by
 * tensor (PyTorch) would otherwise fill the reserve with weights and leave no VRAM for the
 * small allocations and activations that follow. */
static uint64_t reserve_room_locked(const struct sw_dev *d, uint64_t size) {
  if (d->has_budget_override || sw_cfg.has_budget || size > sw_cfg.reserve || d->reserve_live >= sw_cfg.reserve_allocs)
    return 0;
  uint64_t limit = sw_cfg.reserve > UINT64_MAX - d->budget ? UINT64_MAX : d->budget + sw_cfg.reserve;
  return limit > d->vram_used ? limit - d->vram_used : 0;
}

int sw_decide_locked(struct sw_rec *rec, const struct sw_rule *rule, int force_host, const char **why) {
  struct sw_dev *d = &sw_devs[rec->dev];
  uint64_t size = rec->size, avail = sw_avail_locked(rec->dev);
  int action = rule ? rule->action : SW_ACT_AUTO;
  int to_reserve = action == SW_ACT_AUTO && size > avail && size >= sw_cfg.min_spill && size <= reserve_room_locked(d, size);
  if (!force_host && (action == SW_ACT_VRAM || (action == SW_ACT_AUTO && (size < sw_cfg.min_spill || size <= avail)) ||
                      to_reserve || (action == SW_ACT_HEAD && rule->head >= size))) {
    rec->kind = SW_K_VRAM;
    rec->vram = size;
    rec->in_reserve = to_reserve;
    *why = action == SW_ACT_VRAM ? "placement rule" : size < sw_cfg.min_spill ? "below min spill"
           : to_reserve ? "late allocation, fits the reserve" : "fits the budget";
  } else {
    uint64_t want_head = force_host || action == SW_ACT_HOST ? 0 : action == SW_ACT_HEAD ? rule->head : avail;
    rec->kind = sw_backing_choose(rec->dev, want_head >= d->gran);
    if (rec->kind == SW_K_VMM) {
      if (size > UINT64_MAX - d->gran) return SW_DECIDE_TOO_BIG;
      uint64_t span = sw_round_up(size, d->gran);
      rec->vram = sw_round_down(want_head < span ? want_head : span, d->gran);
      rec->host = span - rec->vram;
    } else {
      rec->host = rec->kind == SW_K_KMOD ? sw_kmod_round(size) : size;
      if (!rec->host) return SW_DECIDE_TOO_BIG;
    }
    *why = force_host ? "VRAM allocation failed" : rule ? "placement rule" : "over the budget";
    if (!sw_host_fits_locked(rec->host)) {
      SW_INFO("alloc %.1f MiB on device %d: needs %.1f MiB of host memory, %.1f MiB of the %.1f MiB host limit in use: out of memory",
              sw_mib(size), rec->dev, sw_mib(rec->host), sw_mib(sw_host_used), sw_mib(sw_cfg.host_limit));
      return SW_DECIDE_HOST_LIMIT;
    }
  }
  d->vram_used += rec->vram;
  d->reserve_live += (uint64_t)rec->in_reserve;
  sw_host_used += rec->host;
  return SW_DECIDE_OK;
}

void sw_unreserve_locked(const struct sw_rec *rec) {
  sw_devs[rec->dev].vram_used -= rec->vram;
  sw_devs[rec->dev].reserve_live -= (uint64_t)rec->in_reserve;
  sw_host_used -= rec->host;
}

int sw_decide_whole_locked(int dev, uint64_t size, uint64_t host_bytes, int force_host, uint64_t min_spill, int *in_reserve) {
  struct sw_dev *d = &sw_devs[dev];
  uint64_t avail = sw_avail_locked(dev);
  int to_reserve = size > avail && size >= min_spill && size <= reserve_room_locked(d, size);
  *in_reserve = 0;
  if (!force_host && (size < min_spill || size <= avail || to_reserve)) {
    d->vram_used += size;
    d->reserve_live += (uint64_t)to_reserve;
    *in_reserve = to_reserve;
    return SW_WHOLE_VRAM;
  }
  if (!sw_host_fits_locked(host_bytes)) return SW_WHOLE_REFUSED;
  sw_host_used += host_bytes;
  return SW_WHOLE_HOST;
}
