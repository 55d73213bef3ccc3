/*
 * A fake libcuda for the CPU tests of ffi/cuda.ts and engine/hardware/measure/gpu.ts: the calls the
 * bench makes, implemented on host memory, so argument marshalling (out-parameters, kernel
 * parameter arrays, 64-bit sizes) and the bench's bookkeeping are checked without a GPU.
 *
 * "Kernels" are not run from PTX: cuLaunchKernel checks the module holds the PTX entry it was asked
 * for, then reads its (ptr, n16, sentinel, out) parameters through the kernelParams array exactly
 * as the driver would and reads n16*16 bytes at ptr, so a wrong pointer or size crashes the test.
 * Events record the host clock. Counters (fake_live_allocations) let tests check that nothing leaks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, NOT_FOUND = 500 };

static int initialized;
static long live; /* allocations, registrations, modules, events and contexts not yet released */
static long launches;

long fake_live_allocations(void) { return live; }
long fake_launches(void) { return launches; }

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

CUresult cuInit(unsigned flags) { (void)flags; initialized = 1; return OK; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return OK; }
CUresult cuGetErrorName(CUresult e, const char **s) {
  *s = e == OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY" : e == INVALID_VALUE ? "CUDA_ERROR_INVALID_VALUE" : "CUDA_ERROR_UNKNOWN";
  return OK;
}
CUresult cuGetErrorString(CUresult e, const char **s) {
  *s = e == OUT_OF_MEMORY ? "out of memory" : e == INVALID_VALUE ? "invalid argument" : "unknown error";
  return OK;
}
CUresult cuDeviceGetCount(int *n) { if (!initialized) return NOT_INITIALIZED; *n = 1; return OK; }
CUresult cuDeviceGet(int *d, int ordinal) { if (ordinal != 0) return INVALID_VALUE; *d = 0; return OK; }
CUresult cuDeviceGetName(char *name, int len, int dev) {
  (void)dev;
  strncpy(name, "Fake GPU 9000", (size_t)len);
  return OK;
}
CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
  (void)dev;
  switch (attr) {
    case 16: *v = 4; break;          /* SMs */
    case 75: *v = 9; break;          /* cc major */
    case 76: *v = 0; break;          /* cc minor */
    case 33: *v = 0x1b; break;       /* bus */
    default: *v = 0;
  }
  return OK;
}
CUresult cuDeviceTotalMem_v2(size_t *b, int dev) { (void)dev; *b = (size_t)8 << 30; return OK; }
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) { (void)dev; *ctx = (void *)0x1000; live++; return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; live--; return OK; }
CUresult cuCtxSetCurrent(void *ctx) { return ctx == (void *)0x1000 ? OK : INVALID_VALUE; }
CUresult cuCtxSynchronize(void) { return OK; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = (size_t)6 << 30; *t = (size_t)8 << 30; return OK; }
CUresult cuMemAlloc_v2(uint64_t *d, size_t n) {
  if (n > ((size_t)6 << 30)) return OUT_OF_MEMORY;
  void *p = malloc(n);
  if (!p) return OUT_OF_MEMORY;
  *d = (uint64_t)(uintptr_t)p;
  live++;
  return OK;
}
CUresult cuMemFree_v2(uint64_t d) { free((void *)(uintptr_t)d); live--; return OK; }
CUresult cuMemsetD8_v2(uint64_t d, unsigned char v, size_t n) { memset((void *)(uintptr_t)d, v, n); return OK; }
CUresult cuMemHostAlloc(void **p, size_t n, unsigned flags) {
  (void)flags;
  *p = malloc(n);
  if (!*p) return OUT_OF_MEMORY;
  live++;
  return OK;
}
CUresult cuMemFreeHost(void *p) { free(p); live--; return OK; }
CUresult cuMemHostGetDevicePointer_v2(uint64_t *d, void *p, unsigned flags) {
  if (flags != 0) return INVALID_VALUE;
  *d = (uint64_t)(uintptr_t)p;
  return OK;
}
CUresult cuMemHostRegister_v2(void *p, size_t n, unsigned flags) {
  (void)flags;
  volatile unsigned char *c = p; /* touch first and last byte like pinning would */
  (void)c[0]; (void)c[n - 1];
  live++;
  return OK;
}
CUresult cuMemHostUnregister(void *p) { (void)p; live--; return OK; }
CUresult cuMemcpyHtoD_v2(uint64_t d, const void *h, size_t n) { memcpy((void *)(uintptr_t)d, h, n); return OK; }
CUresult cuMemcpyHtoDAsync_v2(uint64_t d, const void *h, size_t n, void *stream) {
  (void)stream;
  memcpy((void *)(uintptr_t)d, h, n);
  return OK;
}
CUresult cuMemcpyDtoH_v2(void *h, uint64_t d, size_t n) { memcpy(h, (void *)(uintptr_t)d, n); return OK; }

typedef struct { char *ptx; } module_t;
CUresult cuModuleLoadData(void **m, const void *image) {
  const char *s = image;
  if (!strstr(s, ".version") || !strstr(s, ".target")) return 218; /* CUDA_ERROR_INVALID_PTX */
  module_t *mod = malloc(sizeof *mod);
  mod->ptx = strdup(s);
  *m = mod;
  live++;
  return OK;
}
CUresult cuModuleUnload(void *m) { free(((module_t *)m)->ptx); free(m); live--; return OK; }
/* Two kernels, told apart by their handle: spillway_read (ptr, n16, sentinel, out) and
 * spillway_read_q8 (ptr, blocks_per_row, sentinel, out: gx rows of 34-byte blocks). */
static int fn_read, fn_read_q8;
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
  char entry[256];
  snprintf(entry, sizeof entry, ".entry %s(", name);
  if (!strstr(((module_t *)m)->ptx, entry)) return NOT_FOUND;
  *f = strcmp(name, "spillway_read_q8") == 0 ? (void *)&fn_read_q8 : (void *)&fn_read;
  return OK;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void *stream, void **params, void **extra) {
  (void)shared; (void)stream;
  if (!f || !params || extra || gx == 0 || bx == 0 || gy != 1 || gz != 1 || by != 1 || bz != 1) return INVALID_VALUE;
  if (f == &fn_read_q8) {
    const uint8_t *q = *(const uint8_t **)params[0];
    uint32_t blocks = *(const uint32_t *)params[1];
    uint32_t sentinel = *(const uint32_t *)params[2];
    uint32_t *out = *(uint32_t **)params[3];
    uint16_t acc = 0, h;
    for (uint64_t i = 0; i < (uint64_t)gx * blocks * 34; i += 2) {
      memcpy(&h, q + i, 2);
      acc ^= h;
    }
    if (acc == sentinel) out[0] = acc;
    launches++;
    return OK;
  }
  const uint32_t *p = *(const uint32_t **)params[0];
  uint64_t n16 = *(const uint64_t *)params[1];
  uint32_t sentinel = *(const uint32_t *)params[2];
  uint32_t *out = *(uint32_t **)params[3];
  uint32_t acc = 0;
  for (uint64_t i = 0; i < n16 * 4; i++) acc ^= p[i];
  if (acc == sentinel) out[0] = acc;
  launches++;
  return OK;
}
CUresult cuEventCreate(double **e, unsigned flags) {
  (void)flags;
  *e = malloc(sizeof(double));
  live++;
  return OK;
}
CUresult cuEventRecord(double *e, void *stream) { (void)stream; *e = now_ms(); return OK; }
CUresult cuEventSynchronize(double *e) { (void)e; return OK; }
CUresult cuEventElapsedTime_v2(float *ms, double *a, double *b) {
  double d = *b - *a;
  *ms = (float)(d > 1e-4 ? d : 1e-4);
  return OK;
}
CUresult cuEventDestroy_v2(double *e) { free(e); live--; return OK; }
