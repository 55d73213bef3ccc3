/*
 * The host backings a spilled allocation lives in, each GPU-readable in place (zero-copy): CUDA VMM
 * (one virtual range, VRAM head + host tail), mapped pinned memory (cuMemHostAlloc DEVICEMAP), and the
 * /dev/spillway pool (a DMA-BUF mmap'd and registered with cuMemHostRegister). Build and take apart.
 */
#include "place.h"

#include <errno.h>
#include <fcntl.h>
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

uint64_t sw_kmod_round(uint64_t size) {
#if SW_HAVE_KMOD
  return size > UINT64_MAX - SPILLWAY_CHUNK_SIZE ? 0 : sw_round_up(size, SPILLWAY_CHUNK_SIZE);
#else
  return size;
#endif
}

static CUresult kmod_alloc(struct sw_rec *rec) {
#if SW_HAVE_KMOD
  uint64_t bytes = rec->host;
  int dfd = kmod_open();
  if (dfd < 0) return CUDA_ERROR_OUT_OF_MEMORY;
  struct spillway_alloc a;
  memset(&a, 0, sizeof a);
  a.size = bytes;
  a.flags = SPILLWAY_ALLOC_FALLBACK;
  if (ioctl(dfd, SPILLWAY_IOC_ALLOC, &a)) {
    SW_WARN("%s: ALLOC of %.1f MiB failed: %s", sw_cfg.kmod_device, sw_mib(bytes), strerror(errno));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, 0);
  if (p == MAP_FAILED) {
    SW_WARN("mmap of a %.1f MiB pool buffer failed: %s", sw_mib(bytes), strerror(errno));
    close(a.fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  /* A forked child (a DataLoader worker) must not keep the pool's pages nor write memory the GPU
   * reads: the mapping is not inherited (and the child closes the fd, sw_backings_forget_in_child). */
  if (madvise(p, bytes, MADV_DONTFORK)) SW_WARN("madvise(MADV_DONTFORK) of a pool buffer failed: %s", strerror(errno));
  CUresult r = sw_drv.cuMemHostRegister ? sw_drv.cuMemHostRegister(p, bytes, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP)
                                        : CUDA_ERROR_NOT_SUPPORTED;
  CUdeviceptr d = 0;
  if (r == CUDA_SUCCESS) {
    r = sw_drv.cuMemHostGetDevicePointer ? sw_drv.cuMemHostGetDevicePointer(&d, p, 0) : CUDA_ERROR_NOT_SUPPORTED;
    if (r != CUDA_SUCCESS) sw_drv.cuMemHostUnregister(p);
  }
  if (r != CUDA_SUCCESS) {
    SW_WARN("cuMemHostRegister of a %.1f MiB pool buffer failed (%d)", sw_mib(bytes), r);
    munmap(p, bytes);
    close(a.fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  rec->ptr = d, rec->hostp = p, rec->fd = a.fd;
  return CUDA_SUCCESS;
#else
  (void)rec;
  return CUDA_ERROR_OUT_OF_MEMORY;
#endif
}

/* ---- CUDA VMM: one virtual range, head in VRAM, tail in host memory ---- */
/* Create one physical part and map it at va; *create_failed tells which of the two steps failed. */
static CUresult vmm_map_part(CUdeviceptr va, uint64_t bytes, CUmemLocationType type, int id, int *create_failed) {
  CUmemAllocationProp prop;
  memset(&prop, 0, sizeof prop);
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = type;
  prop.location.id = id;
  CUmemGenericAllocationHandle h;
  CUresult r = sw_drv.cuMemCreate(&h, bytes, &prop, 0);
  if (r != CUDA_SUCCESS) {
    *create_failed = 1;
    return r;
  }
  r = sw_drv.cuMemMap(va, bytes, 0, h, 0);
  sw_drv.cuMemRelease(h); /* the mapping keeps the memory */
  return r;
}

static CUresult vmm_alloc(struct sw_rec *rec, int *head_failed, int *host_unsupported) {
  const struct sw_dev *d = &sw_devs[rec->dev];
  uint64_t head = rec->vram, tail = rec->host, span = head + tail;
  if (!d->vmm) return CUDA_ERROR_NOT_SUPPORTED;
  CUdeviceptr va = 0;
  CUresult r = sw_drv.cuMemAddressReserve(&va, span, d->gran, 0, 0);
  if (r != CUDA_SUCCESS) return r;
  int head_mapped = 0, tail_mapped = 0, create_failed = 0;
  if (head) {
    r = vmm_map_part(va, head, CU_MEM_LOCATION_TYPE_DEVICE, rec->dev, head_failed);
    head_mapped = r == CUDA_SUCCESS;
  }
  if (r == CUDA_SUCCESS && tail) {
    r = vmm_map_part(va + head, tail, CU_MEM_LOCATION_TYPE_HOST_NUMA, d->numa, &create_failed);
    if (create_failed && r != CUDA_ERROR_OUT_OF_MEMORY) *host_unsupported = 1;
    tail_mapped = r == CUDA_SUCCESS;
  }
  if (r == CUDA_SUCCESS) {
    CUmemAccessDesc acc;
    memset(&acc, 0, sizeof acc);
    acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    acc.location.id = rec->dev;
    acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    r = sw_drv.cuMemSetAccess(va, span, &acc, 1);
  }
  if (r == CUDA_SUCCESS) {
    rec->ptr = va;
    return CUDA_SUCCESS;
  }
  if (head_mapped) sw_drv.cuMemUnmap(va, head);
  if (tail_mapped) sw_drv.cuMemUnmap(va + head, tail);
  sw_drv.cuMemAddressFree(va, span);
  return r;
}

/* ---- mapped pinned memory ---- */
static CUresult mapped_alloc(struct sw_rec *rec) {
  if (!sw_drv.cuMemHostAlloc || !sw_drv.cuMemHostGetDevicePointer) return CUDA_ERROR_NOT_SUPPORTED;
  void *p = NULL;
  CUresult r = sw_drv.cuMemHostAlloc(&p, rec->size, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP);
  if (r != CUDA_SUCCESS) return r;
  CUdeviceptr d = 0;
  if ((r = sw_drv.cuMemHostGetDevicePointer(&d, p, 0)) != CUDA_SUCCESS) {
    sw_drv.cuMemFreeHost(p);
    return r;
  }
  /* Pinned pages the GPU reads stay out of forked children too. */
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)p & ~(page - 1);
  if (madvise((void *)lo, (uintptr_t)p + rec->size - lo, MADV_DONTFORK))
    SW_WARN("madvise(MADV_DONTFORK) of mapped pinned memory failed: %s", strerror(errno));
  rec->ptr = d, rec->hostp = p;
  return CUDA_SUCCESS;
}

/* Backing for the host part: splits need VMM; whole-host allocations prefer the module's pool. */
int sw_backing_choose(int dev, int split) {
  switch (sw_cfg.backing) {
    case SPILLWAY_BACKING_KMOD: return SW_K_KMOD;
    case SPILLWAY_BACKING_VMM: return SW_K_VMM;
    case SPILLWAY_BACKING_MAPPED: return SW_K_MAPPED;
    default:
      if (split && sw_vmm_usable(dev)) return SW_K_VMM;
      if (kmod_open() >= 0) return SW_K_KMOD;
      return sw_vmm_usable(dev) ? SW_K_VMM : SW_K_MAPPED;
  }
}

int sw_host_tier(int kind) {
  /* Managed memory advised to stay in host memory is counted with mapped pinned memory: both are
   * host pages the GPU reads in place. */
  return kind == SW_K_VMM ? SPILLWAY_TIER_HOST_VMM : kind == SW_K_KMOD ? SPILLWAY_TIER_HOST_KMOD : SPILLWAY_TIER_HOST_MAPPED;
}

CUresult sw_backing_alloc(struct sw_rec *rec, int *head_failed, int *host_unsupported) {
  switch (rec->kind) {
    case SW_K_VMM: return vmm_alloc(rec, head_failed, host_unsupported);
    case SW_K_MAPPED: return mapped_alloc(rec);
    case SW_K_KMOD: return kmod_alloc(rec);
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

/* In a forked child: the pool buffer's fd is closed (its mapping was not inherited: MADV_DONTFORK),
 * so the child holds none of the pool's pages or memlock charge once the parent frees. */
void sw_backing_forget_in_child(const struct sw_rec *r) {
  if (r->kind == SW_K_KMOD && r->fd >= 0) close(r->fd);
}

void sw_backings_forget_in_child(void) {
#if SW_HAVE_KMOD
  int fd = __atomic_exchange_n(&kmod_fd, -2, __ATOMIC_ACQ_REL);
  if (fd >= 0) close(fd);
#endif
}

void sw_backing_free(const struct sw_rec *r) {
  if (r->kind == SW_K_VMM) {
    if (r->vram) sw_drv.cuMemUnmap(r->ptr, r->vram);
    if (r->host) sw_drv.cuMemUnmap(r->ptr + r->vram, r->host);
    sw_drv.cuMemAddressFree(r->ptr, r->vram + r->host);
  } else if (r->kind == SW_K_MAPPED) {
    sw_drv.cuMemFreeHost(r->hostp);
  } else if (r->kind == SW_K_KMOD) {
    sw_drv.cuMemHostUnregister(r->hostp);
    munmap(r->hostp, r->host);
    close(r->fd);
  }
}
