/*
 * concurrent_bw: do the two paths to host memory add up? CPU threads sum one pinned buffer (the
 * CPU computing host-resident weights) while a GPU kernel reads another, host-mapped buffer over
 * PCIe (zero-copy). Measures each path alone and both at the same time, both rates over the same
 * window, and prints one JSON object. The CUDA driver is loaded with dlopen (no CUDA headers or
 * toolkit needed to build this) and runs the PTX read kernel shipped beside this file.
 *
 * Usage: concurrent_bw LIBCUDA PTX_FILE [--threads N] [--cpu-bytes B] [--gpu-bytes B]
 *                      [--seconds S] [--repeats R] [--device D]
 * Output: {"threads":16,"cpuBytes":...,"gpuBytes":...,"seconds":1.5,
 *          "cpuAloneGBps":[..],"gpuAloneGBps":[..],"cpuTogetherGBps":[..],"gpuTogetherGBps":[..],
 *          "gpuQ8AloneGBps":[..],"copyAloneGBps":[..],"copyTogetherGBps":[..],"cpuWithCopyGBps":[..]}
 * gpuQ8AloneGBps: the GPU alone again, with llama.cpp's one-token Q8_0 mat-vec load pattern
 * (spillway_read_q8: 16-bit loads of 34-byte blocks, one 2048-wide row per CTA) instead of 16-byte
 * words; left out when the PTX has no such kernel.
 * copy*: the other way a GPU gets host-resident weights, the copy engine: the mapped buffer copied
 * into VRAM in 2 MiB pieces (about one expert matrix of a 30B-A3B Q8_0 block), queued back to back
 * on one stream as llama.cpp queues a block's expert copies; alone, and with the CPU threads summing
 * at the same time (copyTogetherGBps, and the CPU's rate in that window, cpuWithCopyGBps).
 * Errors go to stderr with exit status 1 (usage: 2). Every allocation is released on every path.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef unsigned long long CUdeviceptr;

#define CU_MEMHOSTALLOC_PORTABLE 0x01
#define CU_MEMHOSTALLOC_DEVICEMAP 0x02
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16

static struct {
  CUresult (*init)(unsigned);
  CUresult (*deviceGet)(CUdevice *, int);
  CUresult (*attr)(int *, int, CUdevice);
  CUresult (*ctxRetain)(CUcontext *, CUdevice);
  CUresult (*ctxRelease)(CUdevice);
  CUresult (*ctxSetCurrent)(CUcontext);
  CUresult (*ctxSync)(void);
  CUresult (*hostAlloc)(void **, size_t, unsigned);
  CUresult (*freeHost)(void *);
  CUresult (*hostDevPtr)(CUdeviceptr *, void *, unsigned);
  CUresult (*memAlloc)(CUdeviceptr *, size_t);
  CUresult (*memFree)(CUdeviceptr);
  CUresult (*copyAsync)(CUdeviceptr, const void *, size_t, void *);
  CUresult (*modLoad)(CUmodule *, const void *);
  CUresult (*modUnload)(CUmodule);
  CUresult (*modFn)(CUfunction *, CUmodule, const char *);
  CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                     void **, void **);
  CUresult (*errName)(CUresult, const char **);
} cu;

static void *lib;
static const char *failed_call;
static CUresult failed_rc;

/* CK(call): record the first failing driver call and jump to cleanup. */
#define CK(x)                                                                                                          \
  do {                                                                                                                 \
    CUresult rc_ = (x);                                                                                                \
    if (rc_ != 0) {                                                                                                    \
      failed_call = #x;                                                                                                \
      failed_rc = rc_;                                                                                                 \
      goto done;                                                                                                       \
    }                                                                                                                  \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int load_driver(const char *path) {
  lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "concurrent_bw: cannot load the CUDA driver %s: %s\n", path, dlerror());
    return -1;
  }
  struct {
    void **slot;
    const char *name;
  } syms[] = {
      {(void **)&cu.init, "cuInit"},
      {(void **)&cu.deviceGet, "cuDeviceGet"},
      {(void **)&cu.attr, "cuDeviceGetAttribute"},
      {(void **)&cu.ctxRetain, "cuDevicePrimaryCtxRetain"},
      {(void **)&cu.ctxRelease, "cuDevicePrimaryCtxRelease_v2"},
      {(void **)&cu.ctxSetCurrent, "cuCtxSetCurrent"},
      {(void **)&cu.ctxSync, "cuCtxSynchronize"},
      {(void **)&cu.hostAlloc, "cuMemHostAlloc"},
      {(void **)&cu.freeHost, "cuMemFreeHost"},
      {(void **)&cu.hostDevPtr, "cuMemHostGetDevicePointer_v2"},
      {(void **)&cu.memAlloc, "cuMemAlloc_v2"},
      {(void **)&cu.memFree, "cuMemFree_v2"},
      {(void **)&cu.copyAsync, "cuMemcpyHtoDAsync_v2"},
      {(void **)&cu.modLoad, "cuModuleLoadData"},
      {(void **)&cu.modUnload, "cuModuleUnload"},
      {(void **)&cu.modFn, "cuModuleGetFunction"},
      {(void **)&cu.launch, "cuLaunchKernel"},
      {(void **)&cu.errName, "cuGetErrorName"},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(lib, syms[i].name);
    if (!*syms[i].slot) {
      fprintf(stderr, "concurrent_bw: %s has no %s\n", path, syms[i].name);
      return -1;
    }
  }
  return 0;
}

/* ---- CPU side: threads sum their slice of one buffer until told to stop ---- */

#define CHUNK (1u << 20) /* bytes summed between two looks at the stop flag */

struct cpu_worker {
  pthread_t tid;
  const uint64_t *base;
  size_t bytes;
  double t0;
  atomic_int *stop;
  uint64_t done_bytes;
  double elapsed;
  uint64_t sink;
};

static uint64_t sum_chunk(const uint64_t *p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 3 < n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  return a ^ b ^ c ^ d;
}

static void *cpu_run(void *arg) {
  struct cpu_worker *w = arg;
  size_t off = 0;
  uint64_t acc = 0, n = 0;
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    size_t len = w->bytes - off < CHUNK ? w->bytes - off : CHUNK;
    acc += sum_chunk(w->base + off / 8, len / 8);
    n += len;
    off += len;
    if (off >= w->bytes) off = 0;
  }
  w->elapsed = now_s() - w->t0;
  w->done_bytes = n;
  w->sink = acc;
  return NULL;
}

/* Start the CPU workers over buf; returns how many started (all, or 0 on failure). */
static int cpu_start(struct cpu_worker *ws, int threads, const void *buf, size_t bytes, atomic_int *stop, double t0) {
  size_t slice = (bytes / threads) & ~(size_t)63;
  for (int i = 0; i < threads; i++) {
    ws[i] = (struct cpu_worker){.base = (const uint64_t *)((const char *)buf + (size_t)i * slice),
                                .bytes = slice, .t0 = t0, .stop = stop};
    if (pthread_create(&ws[i].tid, NULL, cpu_run, &ws[i]) != 0) {
      atomic_store(stop, 1);
      for (int j = 0; j < i; j++) pthread_join(ws[j].tid, NULL);
      return 0;
    }
  }
  return threads;
}

/* Join the workers; their combined rate in GB/s over the longest worker's window. */
static double cpu_join(struct cpu_worker *ws, int threads, uint64_t *sink) {
  uint64_t total = 0;
  double longest = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(ws[i].tid, NULL);
    total += ws[i].done_bytes;
    if (ws[i].elapsed > longest) longest = ws[i].elapsed;
    *sink ^= ws[i].sink;
  }
  return longest > 0 ? total / longest / 1e9 : 0;
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v <= 0) return -1;
  switch (*end) {
    case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    case 'M': v *= 1024.0 * 1024; end++; break;
    case 'K': v *= 1024.0; end++; break;
    default: break;
  }
  if (*end) return -1;
  *out = (size_t)v;
  return 0;
}

static void print_list(const char *name, const double *v, int n, int last) {
  printf("\"%s\":[", name);
  for (int i = 0; i < n; i++) printf("%s%.3f", i ? "," : "", v[i]);
  printf("]%s", last ? "" : ",");
}

/*
 * Whole-buffer reads by fn back to back until `seconds` have passed; *gbps is `bytes` per launch over
 * the window. Returns the first failing driver call's status (then *gbps is left as it was).
 */
static CUresult gpu_read_window(CUfunction fn, unsigned grid, unsigned block, void **params, double bytes, double seconds,
                                double *gbps) {
  double t0 = now_s(), t_last = t0;
  unsigned long long launches = 0;
  CUresult rc;
  while (t_last - t0 < seconds) {
    if ((rc = cu.launch(fn, grid, 1, 1, block, 1, 1, 0, NULL, params, NULL)) != 0) return rc;
    if ((rc = cu.ctxSync()) != 0) return rc;
    launches++;
    t_last = now_s();
  }
  *gbps = launches * bytes / (t_last - t0) / 1e9;
  return 0;
}

#define COPY_PIECE ((size_t)2 << 20)

/*
 * Whole-buffer copies into VRAM (piece by piece into one device buffer of `piece` bytes, all queued,
 * then one synchronize) back to back until `seconds` have passed; *gbps over the window.
 */
static CUresult copy_window(CUdeviceptr dst, size_t piece, const char *src, size_t bytes, double seconds, double *gbps) {
  double t0 = now_s(), t_last = t0;
  unsigned long long passes = 0;
  CUresult rc;
  size_t whole = bytes / piece * piece;
  while (t_last - t0 < seconds) {
    for (size_t off = 0; off < whole; off += piece)
      if ((rc = cu.copyAsync(dst, src + off, piece, NULL)) != 0) return rc;
    if ((rc = cu.ctxSync()) != 0) return rc;
    passes++;
    t_last = now_s();
  }
  *gbps = passes * (double)whole / (t_last - t0) / 1e9;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: concurrent_bw LIBCUDA PTX_FILE [--threads N] [--cpu-bytes B] [--gpu-bytes B] "
                    "[--seconds S] [--repeats R] [--device D]\n");
    return 2;
  }
  long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = nproc > 0 ? (int)nproc : 1, repeats = 3, device = 0;
  size_t cpu_bytes = (size_t)4 << 30, gpu_bytes = (size_t)4 << 30;
  double seconds = 1.5;
  for (int i = 3; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int bad = !v;
    if (!bad && !strcmp(a, "--threads")) bad = (threads = atoi(v)) <= 0 || threads > 1024;
    else if (!bad && !strcmp(a, "--cpu-bytes")) bad = parse_size(v, &cpu_bytes);
    else if (!bad && !strcmp(a, "--gpu-bytes")) bad = parse_size(v, &gpu_bytes);
    else if (!bad && !strcmp(a, "--seconds")) bad = (seconds = atof(v)) <= 0;
    else if (!bad && !strcmp(a, "--repeats")) bad = (repeats = atoi(v)) <= 0 || repeats > 100;
    else if (!bad && !strcmp(a, "--device")) bad = (device = atoi(v)) < 0;
    else bad = 1;
    if (bad) {
      fprintf(stderr, "concurrent_bw: bad option %s%s%s\n", a, v ? " " : "", v ? v : "");
      return 2;
    }
    i++;
  }
  if (cpu_bytes < (size_t)threads * 64 * 4 || gpu_bytes < 4096) {
    fprintf(stderr, "concurrent_bw: buffers too small for %d threads\n", threads);
    return 2;
  }
  gpu_bytes &= ~(size_t)15;

  /* The PTX text, NUL-terminated for cuModuleLoadData. */
  FILE *f = fopen(argv[2], "rb");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long ptx_len = ftell(f);
  rewind(f);
  char *ptx = calloc(1, (size_t)ptx_len + 1);
  if (!ptx || fread(ptx, 1, (size_t)ptx_len, f) != (size_t)ptx_len) {
    fprintf(stderr, "concurrent_bw: cannot read %s\n", argv[2]);
    fclose(f);
    free(ptx);
    return 1;
  }
  fclose(f);
  if (load_driver(argv[1]) != 0) {
    free(ptx);
    return 1;
  }

  int status = 1, have_ctx = 0, sms = 0;
  CUdevice dev = 0;
  CUcontext ctx = NULL;
  CUmodule mod = NULL;
  CUfunction fn = NULL, fn_q8 = NULL;
  void *cpu_buf = NULL, *gpu_buf = NULL;
  CUdeviceptr sink = 0, gpu_dev = 0, piece = 0;
  uint64_t cpu_sink = 0;
  enum { NRES = 8 }; /* per repeat: the JSON lists in print order */
  double *res = calloc((size_t)repeats * NRES, sizeof(double));
  struct cpu_worker *ws = calloc((size_t)threads, sizeof *ws);
  if (!res || !ws) goto done;

  CK(cu.init(0));
  CK(cu.deviceGet(&dev, device));
  CK(cu.attr(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
  CK(cu.ctxRetain(&ctx, dev));
  have_ctx = 1;
  CK(cu.ctxSetCurrent(ctx));
  /* Both buffers pinned, as llama.cpp's host weights are; only the GPU's is read through a mapping. */
  CK(cu.hostAlloc(&cpu_buf, cpu_bytes, CU_MEMHOSTALLOC_PORTABLE));
  CK(cu.hostAlloc(&gpu_buf, gpu_bytes, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP));
  memset(cpu_buf, 1, cpu_bytes);
  memset(gpu_buf, 1, gpu_bytes);
  CK(cu.hostDevPtr(&gpu_dev, gpu_buf, 0));
  CK(cu.memAlloc(&sink, 256));
  size_t piece_bytes = gpu_bytes < COPY_PIECE ? gpu_bytes : COPY_PIECE;
  CK(cu.memAlloc(&piece, piece_bytes));
  CK(cu.modLoad(&mod, ptx));
  CK(cu.modFn(&fn, mod, "spillway_read"));
  if (cu.modFn(&fn_q8, mod, "spillway_read_q8") != 0) fn_q8 = NULL;

  unsigned long long n16 = gpu_bytes / 16;
  unsigned sentinel = 0x5eed1234u;
  void *params[] = {&gpu_dev, &n16, &sentinel, &sink};
  /* Enough resident threads (2048 per SM), 4 loads in flight each, to cover PCIe latency. */
  unsigned grid = (unsigned)(sms > 0 ? sms * 4 : 4);
  CK(cu.launch(fn, grid, 1, 1, 512, 1, 1, 0, NULL, params, NULL)); /* warm-up (JIT, TLB) */
  CK(cu.ctxSync());
  /* The Q8_0 pattern: rows of 64 blocks (2048 weights, 2176 bytes), one CTA of 128 threads each. */
  unsigned q8_blocks = 64;
  unsigned q8_rows = (unsigned)(gpu_bytes / (q8_blocks * 34u));
  void *params_q8[] = {&gpu_dev, &q8_blocks, &sentinel, &sink};
  double q8_bytes = (double)q8_rows * q8_blocks * 34u;
  if (fn_q8) {
    CK(cu.launch(fn_q8, q8_rows, 1, 1, 128, 1, 1, 0, NULL, params_q8, NULL));
    CK(cu.ctxSync());
  }

  for (int r = 0; r < repeats; r++) {
    atomic_int stop;
    /* CPU alone */
    atomic_init(&stop, 0);
    double t0 = now_s();
    if (!cpu_start(ws, threads, cpu_buf, cpu_bytes, &stop, t0)) goto done;
    while (now_s() - t0 < seconds) usleep(1000);
    atomic_store(&stop, 1);
    res[r * NRES + 0] = cpu_join(ws, threads, &cpu_sink);

    /* GPU alone. */
    CK(gpu_read_window(fn, grid, 512, params, (double)gpu_bytes, seconds, &res[r * NRES + 1]));

    /* Together: the CPU threads run until the GPU's last read of the window has finished. */
    atomic_init(&stop, 0);
    t0 = now_s();
    if (!cpu_start(ws, threads, cpu_buf, cpu_bytes, &stop, t0)) goto done;
    CUresult lrc = gpu_read_window(fn, grid, 512, params, (double)gpu_bytes, seconds, &res[r * NRES + 3]);
    atomic_store(&stop, 1);
    res[r * NRES + 2] = cpu_join(ws, threads, &cpu_sink);
    CK(lrc);

    /* GPU alone, llama.cpp's Q8_0 load pattern. */
    if (fn_q8) CK(gpu_read_window(fn_q8, q8_rows, 128, params_q8, q8_bytes, seconds, &res[r * NRES + 4]));

    /* The copy engine alone, then with the CPU threads in the same window. */
    CK(copy_window(piece, piece_bytes, gpu_buf, gpu_bytes, seconds, &res[r * NRES + 5]));
    atomic_init(&stop, 0);
    t0 = now_s();
    if (!cpu_start(ws, threads, cpu_buf, cpu_bytes, &stop, t0)) goto done;
    CUresult crc = copy_window(piece, piece_bytes, gpu_buf, gpu_bytes, seconds, &res[r * NRES + 6]);
    atomic_store(&stop, 1);
    res[r * NRES + 7] = cpu_join(ws, threads, &cpu_sink);
    CK(crc);
  }

  {
    double v[NRES][100];
    for (int k = 0; k < NRES; k++)
      for (int r = 0; r < repeats; r++) v[k][r] = res[r * NRES + k];
    printf("{\"threads\":%d,\"cpuBytes\":%zu,\"gpuBytes\":%zu,\"seconds\":%.3f,\"sink\":%llu,", threads, cpu_bytes,
           gpu_bytes, seconds, (unsigned long long)(cpu_sink & 1));
    print_list("cpuAloneGBps", v[0], repeats, 0);
    print_list("gpuAloneGBps", v[1], repeats, 0);
    print_list("cpuTogetherGBps", v[2], repeats, 0);
    print_list("gpuTogetherGBps", v[3], repeats, 0);
    if (fn_q8) print_list("gpuQ8AloneGBps", v[4], repeats, 0);
    print_list("copyAloneGBps", v[5], repeats, 0);
    print_list("copyTogetherGBps", v[6], repeats, 0);
    print_list("cpuWithCopyGBps", v[7], repeats, 1);
    printf("}\n");
  }
  status = 0;

done:
  if (failed_call) {
    const char *name = "?";
    if (cu.errName) cu.errName(failed_rc, &name);
    fprintf(stderr, "concurrent_bw: %s failed: %s (%d)\n", failed_call, name ? name : "?", failed_rc);
  }
  if (mod) cu.modUnload(mod);
  if (piece) cu.memFree(piece);
  if (sink) cu.memFree(sink);
  if (gpu_buf) cu.freeHost(gpu_buf);
  if (cpu_buf) cu.freeHost(cpu_buf);
  if (have_ctx) cu.ctxRelease(dev);
  free(ws);
  free(res);
  free(ptx);
  dlclose(lib);
  return status;
}
