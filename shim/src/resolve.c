/*
 * Finding the real functions and handing out the hooks: dlsym and dlopen interposition, the driver
 * entry-point queries (cuGetProcAddress, cudaGetDriverEntryPoint), one-time initialization.
 */
#include "shim.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

struct sw_driver sw_drv;
struct sw_reals sw_real;
__thread int sw_tls_depth;

static void *(*real_dlsym_fn)(void *, const char *);
/* Read by the assembly entry stubs below. */
__attribute__((visibility("hidden"))) void *sw_real_dlsym_ptr;
__attribute__((visibility("hidden"))) void *sw_real_dlopen_ptr;

static void resolve_dl(void) {
  if (real_dlsym_fn) return;
  /* dlvsym is not interposed by the shim, so it reaches glibc's: ask it for glibc's dlsym. */
  void *p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
  if (!p) p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
  real_dlsym_fn = (void *(*)(void *, const char *))p;
  __atomic_store_n(&sw_real_dlsym_ptr, p, __ATOMIC_RELEASE);
  if (real_dlsym_fn) __atomic_store_n(&sw_real_dlopen_ptr, real_dlsym_fn(RTLD_NEXT, "dlopen"), __ATOMIC_RELEASE);
}

void *sw_real_dlsym(void *handle, const char *name) {
  if (!real_dlsym_fn) resolve_dl();
  return real_dlsym_fn ? real_dlsym_fn(handle, name) : NULL;
}

static int is_hook(void *p) {
  for (int i = 0; i < sw_nhooks; i++)
    if (sw_hooks[i].hook == p) return 1;
  return 0;
}

static void store_real(struct sw_hook *h, void *fn) {
  if (!fn || is_hook(fn)) return; /* never record a hook as real: it would call itself */
  void *expected = NULL;
  __atomic_compare_exchange_n(h->real, &expected, fn, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/*
 * The path of the libcudart this process loaded (12 or 13), found among the loaded objects. Only the
 * name is copied here: dl_iterate_phdr holds the loader's lock while it calls back, and dlopen in
 * the callback would take the loader's other lock in the opposite order to a concurrent dlopen
 * (deadlock). The caller dlopens after dl_iterate_phdr has returned.
 */
struct cudart_name {
  char path[4096];
};
static int find_cudart(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  const char *slash = strrchr(info->dlpi_name, '/');
  const char *base = slash ? slash + 1 : info->dlpi_name;
  if (strncmp(base, "libcudart.so", 12)) return 0;
  struct cudart_name *out = data;
  size_t n = strlen(info->dlpi_name);
  if (n >= sizeof out->path) return 0; /* cannot be named: keep looking */
  memcpy(out->path, info->dlpi_name, n + 1);
  return 1;
}

void *sw_real_of(const char *name, int lib) {
  struct sw_hook *h = NULL;
  for (int i = 0; i < sw_nhooks; i++)
    if (!strcmp(sw_hooks[i].name, name)) h = &sw_hooks[i];
  if (!h) return NULL;
  void *cur = __atomic_load_n(h->real, __ATOMIC_ACQUIRE);
  if (cur) return cur;
  void *fn = NULL;
  if (lib == SW_LIB_DRIVER) {
    sw_init();
    if (sw_drv.handle) fn = sw_real_dlsym(sw_drv.handle, name);
  } else {
    /* Bind whichever library the program uses: the next definition after the shim ... */
    fn = sw_real_dlsym(RTLD_NEXT, name);
    if (!fn) {
      /* ... or, for a library loaded with RTLD_LOCAL, the loaded object itself. */
      void *handle = NULL;
      if (lib == SW_LIB_RUNTIME) {
        struct cudart_name found = {{0}};
        if (dl_iterate_phdr(find_cudart, &found)) handle = dlopen(found.path, RTLD_NOW | RTLD_NOLOAD);
      } else handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_NOLOAD);
      if (handle) {
        fn = sw_real_dlsym(handle, name);
        dlclose(handle);
      }
    }
  }
  store_real(h, fn);
  return __atomic_load_n(h->real, __ATOMIC_ACQUIRE);
}

void *sw_substitute(void *fn) {
  if (!fn) return fn;
  for (int i = 0; i < sw_nhooks; i++)
    if (sw_hooks[i].lib == SW_LIB_DRIVER && __atomic_load_n(sw_hooks[i].real, __ATOMIC_ACQUIRE) == fn)
      return sw_hooks[i].hook;
  return fn;
}

/*
 * A driver entry point looked up by base name: if the driver's answer is a function the shim hooks
 * (the same pointer, or the variant the name, version and stream flags select), answer the hook.
 */
void *sw_substitute_named(const char *base, void *fn, int version, cuuint64_t flags) {
  if (!fn || sw_cfg.disabled) return fn;
  void *s = sw_substitute(fn);
  if (s != fn || !base) return s;
  int want_ptsz = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  struct sw_hook *best = NULL;
  for (int i = 0; i < sw_nhooks; i++) {
    struct sw_hook *h = &sw_hooks[i];
    if (h->lib != SW_LIB_DRIVER || !h->base || strcmp(h->base, base) || version < h->min_version) continue;
    if (!best) { best = h; continue; }
    int hm = h->ptsz == want_ptsz, bm = best->ptsz == want_ptsz;
    if (hm > bm || (hm == bm && h->min_version > best->min_version)) best = h;
  }
  if (!best || (best->ptsz && !want_ptsz)) return fn;
  store_real(best, fn);
  SW_DEBUG("entry point %s (version %d, flags %llu) -> hook %s", base, version, (unsigned long long)flags, best->name);
  return best->hook;
}

static void load_driver(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!h) h = dlopen("libcuda.so.1", RTLD_NOW);
  if (!h) {
    SW_DEBUG("libcuda.so.1 is not available: %s", dlerror());
    return;
  }
  sw_drv.handle = h;
#define R(f) sw_drv.f = (f##_t)sw_real_dlsym(h, #f)
  R(cuCtxGetCurrent);
  R(cuCtxGetDevice);
  R(cuCtxSynchronize);
  R(cuStreamSynchronize);
  R(cuDeviceGetAttribute);
  R(cuMemHostAlloc);
  R(cuMemFreeHost);
  R(cuMemHostRegister);
  R(cuMemHostUnregister);
  R(cuMemAddressReserve);
  R(cuMemAddressFree);
  R(cuMemCreate);
  R(cuMemRelease);
  R(cuMemMap);
  R(cuMemUnmap);
  R(cuMemSetAccess);
  R(cuMemGetAllocationGranularity);
  R(cuMemAdvise);
  R(cuMemAdvise_v2);
  R(cuStreamIsCapturing);
  R(cuDevicePrimaryCtxGetState);
  R(cuDevicePrimaryCtxRetain);
  sw_drv.cuDevicePrimaryCtxRelease = (cuDevicePrimaryCtxRelease_t)sw_real_dlsym(h, "cuDevicePrimaryCtxRelease_v2");
  sw_drv.cuCtxPushCurrent = (cuCtxPushCurrent_t)sw_real_dlsym(h, "cuCtxPushCurrent_v2");
  sw_drv.cuCtxPopCurrent = (cuCtxPopCurrent_t)sw_real_dlsym(h, "cuCtxPopCurrent_v2");
#undef R
  sw_drv.cuMemHostGetDevicePointer = (cuMemHostGetDevicePointer_t)sw_real_dlsym(h, "cuMemHostGetDevicePointer_v2");
  /* cuda.h maps cuMemHostRegister to _v2 (CUDA >= 6.5); the unversioned export is the legacy ABI. */
  cuMemHostRegister_t reg2 = (cuMemHostRegister_t)sw_real_dlsym(h, "cuMemHostRegister_v2");
  if (reg2) sw_drv.cuMemHostRegister = reg2;
  for (int i = 0; i < sw_nhooks; i++)
    if (sw_hooks[i].lib == SW_LIB_DRIVER) store_real(&sw_hooks[i], sw_real_dlsym(h, sw_hooks[i].name));
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_once_fn(void) {
  resolve_dl();
  load_driver(); /* also when disabled: the hooks still pass calls on to the real functions */
  if (!sw_cfg.disabled) sw_stats_open();
}
void sw_init(void) { pthread_once(&init_once, init_once_fn); }

__attribute__((constructor(101))) static void sw_constructor(void) {
  sw_config_load();
  resolve_dl();
}

/* ---- dlsym / dlopen ---- */

__attribute__((visibility("hidden"))) void *sw_dlsym_impl(void *handle, const char *name) {
  void *r = sw_real_dlsym(handle, name);
  if (!r || !name || sw_cfg.disabled || (name[0] != 'c' && name[0] != 'n')) return r;
  for (int i = 0; i < sw_nhooks; i++) {
    struct sw_hook *h = &sw_hooks[i];
    if (strcmp(name, h->name)) continue;
    store_real(h, r);
    if (r != h->hook) SW_DEBUG("dlsym(%s) -> hook", name);
    return h->hook;
  }
  return r;
}

__attribute__((visibility("hidden"))) void *sw_dlopen_pre(const char *file, int mode) {
  if (!sw_real_dlopen_ptr) resolve_dl();
  if (file && sw_cfg.log_level >= SW_LOG_DEBUG &&
      (strstr(file, "libcuda") || strstr(file, "libcudart") || strstr(file, "libnvidia-ml")))
    sw_log(SW_LOG_DEBUG, "dlopen(%s, 0x%x): CUDA library loaded at run time; its lookups go through the shim's dlsym", file, mode);
  return sw_real_dlopen_ptr;
}

#if defined(__x86_64__)
/*
 * Entry stubs that jump (not call) into glibc, so glibc sees the program's return address: dlopen
 * searches the caller's RUNPATH and dlsym(RTLD_NEXT, ...) looks after the caller, as without the shim.
 */
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym, @function\n"
    "dlsym:\n"
    "  cmpq $-1, %rdi\n"
    "  jne sw_dlsym_impl\n"
    "  movq sw_real_dlsym_ptr(%rip), %rax\n"
    "  testq %rax, %rax\n"
    "  jz sw_dlsym_impl\n"
    "  jmp *%rax\n"
    ".size dlsym, .-dlsym\n"
    ".globl dlopen\n"
    ".type dlopen, @function\n"
    "dlopen:\n"
    "  pushq %rdi\n"
    "  pushq %rsi\n"
    "  subq $8, %rsp\n"
    "  call sw_dlopen_pre\n"
    "  addq $8, %rsp\n"
    "  popq %rsi\n"
    "  popq %rdi\n"
    "  jmp *%rax\n"
    ".size dlopen, .-dlopen\n");
#else
SW_EXPORT void *dlsym(void *handle, const char *name) {
  if (handle == RTLD_NEXT) return sw_real_dlsym(RTLD_NEXT, name);
  return sw_dlsym_impl(handle, name);
}
SW_EXPORT void *dlopen(const char *file, int mode) {
  void *(*real)(const char *, int) = (void *(*)(const char *, int))sw_dlopen_pre(file, mode);
  return real ? real(file, mode) : NULL;
}
#endif

/* ---- driver entry points ---- */

SW_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, cuuint64_t flags,
                                       CUdriverProcAddressQueryResult *status) {
  cuGetProcAddress_v2_t real = (cuGetProcAddress_v2_t)sw_real_of("cuGetProcAddress_v2", SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(symbol, pfn, version, flags, status);
  if (r == CUDA_SUCCESS && pfn) *pfn = sw_substitute_named(symbol, *pfn, version, flags);
  return r;
}

SW_EXPORT CUresult cuGetProcAddress_v2_ptsz(const char *symbol, void **pfn, int version, cuuint64_t flags,
                                            CUdriverProcAddressQueryResult *status) {
  cuGetProcAddress_v2_t real = (cuGetProcAddress_v2_t)sw_real_of("cuGetProcAddress_v2_ptsz", SW_LIB_DRIVER);
  if (!real) return cuGetProcAddress_v2(symbol, pfn, version, flags, status);
  CUresult r = real(symbol, pfn, version, flags, status);
  if (r == CUDA_SUCCESS && pfn) *pfn = sw_substitute_named(symbol, *pfn, version, flags);
  return r;
}

SW_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, cuuint64_t flags) {
  cuGetProcAddress_v1_t real = (cuGetProcAddress_v1_t)sw_real_of("cuGetProcAddress", SW_LIB_DRIVER);
  if (!real) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(symbol, pfn, version, flags);
  if (r == CUDA_SUCCESS && pfn) *pfn = sw_substitute_named(symbol, *pfn, version, flags);
  return r;
}

#define ENTRY_POINT(name)                                                                                   \
  SW_EXPORT cudaError_t name(const char *symbol, void **fn, unsigned long long flags,                       \
                             cudaDriverEntryPointQueryResult *status) {                                     \
    cudaGetDriverEntryPoint_t real = (cudaGetDriverEntryPoint_t)sw_real_of(#name, SW_LIB_RUNTIME);         \
    if (!real) return cudaErrorInitializationError;                                                         \
    cudaError_t r = real(symbol, fn, flags, status);                                                        \
    sw_init();                                                                                              \
    /* The runtime's own version decides the variant; the newest base-name rule applies. */               \
    if (r == cudaSuccess && fn) *fn = sw_substitute_named(symbol, *fn, 1 << 30, flags);                     \
    return r;                                                                                               \
  }
ENTRY_POINT(cudaGetDriverEntryPoint)
ENTRY_POINT(cudaGetDriverEntryPoint_ptsz)

#define ENTRY_POINT_BY_VERSION(name)                                                                          \
  SW_EXPORT cudaError_t name(const char *symbol, void **fn, unsigned int version, unsigned long long flags,   \
                             cudaDriverEntryPointQueryResult *status) {                                       \
    cudaGetDriverEntryPointByVersion_t real =                                                                 \
        (cudaGetDriverEntryPointByVersion_t)sw_real_of(#name, SW_LIB_RUNTIME);                               \
    if (!real) return cudaErrorInitializationError;                                                           \
    cudaError_t r = real(symbol, fn, version, flags, status);                                                 \
    sw_init();                                                                                                \
    if (r == cudaSuccess && fn) *fn = sw_substitute_named(symbol, *fn, (int)version, flags);                  \
    return r;                                                                                                 \
  }
ENTRY_POINT_BY_VERSION(cudaGetDriverEntryPointByVersion)
ENTRY_POINT_BY_VERSION(cudaGetDriverEntryPointByVersion_ptsz)
