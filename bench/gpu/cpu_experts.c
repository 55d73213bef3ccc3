/*
 * cpu_experts: how fast ggml's CPU backend reads a MoE block's routed experts for one token, against
 * the same bytes read by simpler loops on the same machine (issue 22: is the CPU part of a decode
 * token bound by the memory system or by llama.cpp's kernel and its synchronization?).
 *
 * Per token and block: the token's `used` experts (distinct, random, fresh per token) of `experts`
 * are multiplied as llama.cpp's build_moe_ffn does for a gated FFN: up and gate (embd -> ff), the
 * SwiGLU, down (ff -> embd), weighted and summed. Weights are Q8_0, the quantization.
 *
 * Methods (each reports the expert bytes read per second, bytes = used * 3 * ff * embd in Q8_0):
 *   ggml-blocks  one ggml graph per block, computed one after the other (what the scheduler does
 *                when a GPU holds the rest of the block: one CPU split per block)
 *   ggml-token   one graph for all blocks of the token (fewer thread-team starts and joins)
 *   rows         the same vec_dot over the same rows, one OpenMP team per block, each thread a
 *                contiguous row range of every selected expert (no graph, two barriers per block)
 *   rows4        as rows, with this file's dot_rows_q8_0: four rows at once, a quarter of the
 *                thread's range apart (same arithmetic as ggml's AVX2/VNNI kernel; --check compares)
 *   sum          the same bytes summed with eight accumulators (the read rate the memory gives
 *                this access pattern, no arithmetic)
 * Memory: malloc (the kernel's default pages), pinned (cuMemHostAlloc through libcuda, as llama.cpp's
 * CUDA_Host buffers for `-lm none`), or nohuge (malloc with MADV_NOHUGEPAGE: 4 KiB pages).
 *
 * Usage: cpu_experts [--threads N] [--blocks B] [--tokens T] [--embd E] [--ff F] [--experts X]
 *                    [--used K] [--memory malloc|pinned|nohuge] [--methods a,b,...] [--label NAME] [--check]
 * Prints one JSON object per method on stdout. --check compares ggml's output for one token with a
 * scalar reference (same quantized input) and prints its largest relative error; exit 1 when above
 * 1e-3. Exit 2 on bad arguments, 3 when memory cannot be had.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

#define MAX_BLOCKS 128
#define MAX_USED 32

typedef struct {
  int threads, blocks, tokens, embd, ff, experts, used, check;
  const char *memory, *label;
  unsigned methods; /* bit i: METHODS[i] */
} options;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The methods, in the order --methods may name them; options.methods holds one bit per entry. */
static const char *const METHODS[] = {"ggml-blocks", "ggml-token", "rows", "rows4", "sum"};
#define N_METHODS (sizeof METHODS / sizeof *METHODS)

/* Whether the run measures `name` (one of METHODS). */
static int wants(const options *o, const char *name) {
  for (size_t i = 0; i < N_METHODS; ++i)
    if (strcmp(METHODS[i], name) == 0) return (o->methods >> i) & 1;
  return 0;
}

static int die_usage(const char *why) {
  fprintf(stderr, "cpu_experts: %s\n", why);
  return 2;
}

static int parse(int argc, char **argv, options *o) {
  *o = (options){16, 36, 12, 2048, 768, 128, 8, 0, "malloc", "", (1u << N_METHODS) - 1};
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    if (strcmp(a, "--check") == 0) { o->check = 1; continue; }
    if (i + 1 >= argc) return die_usage("an option lacks its value");
    const char *v = argv[++i];
    int *num = strcmp(a, "--threads") == 0 ? &o->threads : strcmp(a, "--blocks") == 0 ? &o->blocks
             : strcmp(a, "--tokens") == 0 ? &o->tokens : strcmp(a, "--embd") == 0 ? &o->embd
             : strcmp(a, "--ff") == 0 ? &o->ff : strcmp(a, "--experts") == 0 ? &o->experts
             : strcmp(a, "--used") == 0 ? &o->used : NULL;
    if (num) {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n <= 0 || n > 1 << 20) { fprintf(stderr, "cpu_experts: %s must be a positive whole number, not '%s'\n", a, v); return 2; }
      *num = (int)n;
    } else if (strcmp(a, "--memory") == 0) {
      o->memory = v;
    } else if (strcmp(a, "--methods") == 0) {
      o->methods = 0;
      for (const char *p = v; *p;) { /* comma-separated names of METHODS */
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t i = 0;
        while (i < N_METHODS && !(strlen(METHODS[i]) == len && strncmp(p, METHODS[i], len) == 0)) ++i;
        if (i == N_METHODS) { fprintf(stderr, "cpu_experts: unknown method '%.*s' in --methods (ggml-blocks, ggml-token, rows, rows4, sum)\n", (int)len, p); return 2; }
        o->methods |= 1u << i;
        if (!end) break;
        p = end + 1;
      }
      if (!o->methods) return die_usage("--methods names no method");
    } else if (strcmp(a, "--label") == 0) {
      for (const char *c = v; *c; ++c)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) return die_usage("--label must not hold quotes, backslashes or control characters");
      o->label = v;
    } else {
      fprintf(stderr, "cpu_experts: unknown option %s\n", a);
      return 2;
    }
  }
  if (o->blocks > MAX_BLOCKS) return die_usage("--blocks is at most 128");
  if (o->used > MAX_USED || o->used > o->experts) return die_usage("--used must be at most --experts and 32");
  if (o->embd % 32 || o->ff % 32) return die_usage("--embd and --ff must be multiples of 32 (Q8_0 blocks)");
  if (strcmp(o->memory, "malloc") && strcmp(o->memory, "pinned") && strcmp(o->memory, "nohuge"))
    return die_usage("--memory must be malloc, pinned or nohuge");
  return 0;
}

/* Pinned host memory the way llama.cpp's CUDA_Host buffer gets it (cudaMallocHost -> cuMemHostAlloc),
 * through the driver library only, so the tool builds without the CUDA toolkit. */
typedef int (*cu_fn_i)(unsigned);
typedef int (*cu_get)(int *, int);
typedef int (*cu_retain)(void **, int);
typedef int (*cu_set)(void *);
typedef int (*cu_host_alloc)(void **, size_t, unsigned);
typedef int (*cu_host_free)(void *);
static cu_host_free cu_free_host;

static void *alloc_pinned(size_t bytes) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "cpu_experts: --memory pinned needs libcuda.so.1 (%s)\n", dlerror()); return NULL; }
  cu_fn_i init = (cu_fn_i)dlsym(lib, "cuInit");
  cu_get dev = (cu_get)dlsym(lib, "cuDeviceGet");
  cu_retain retain = (cu_retain)dlsym(lib, "cuDevicePrimaryCtxRetain");
  cu_set set = (cu_set)dlsym(lib, "cuCtxSetCurrent");
  cu_host_alloc halloc = (cu_host_alloc)dlsym(lib, "cuMemHostAlloc");
  cu_free_host = (cu_host_free)dlsym(lib, "cuMemFreeHost");
  int d;
  void *ctx, *p = NULL;
  if (!init || !dev || !retain || !set || !halloc || !cu_free_host || init(0) || dev(&d, 0) || retain(&ctx, d) || set(ctx)) {
    fprintf(stderr, "cpu_experts: no CUDA device for --memory pinned\n");
    return NULL;
  }
  int rc = halloc(&p, bytes, 0);
  if (rc) { fprintf(stderr, "cpu_experts: cuMemHostAlloc of %zu bytes failed (%d)\n", bytes, rc); return NULL; }
  return p;
}

static void *alloc_weights(const options *o, size_t bytes) {
  if (strcmp(o->memory, "pinned") == 0) return alloc_pinned(bytes);
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("cpu_experts: mmap"); return NULL; }
  madvise(p, bytes, strcmp(o->memory, "nohuge") == 0 ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
  return p;
}

static void free_weights(const options *o, void *p, size_t bytes) {
  if (strcmp(o->memory, "pinned") == 0) cu_free_host(p);
  else munmap(p, bytes);
}

/* Q8_0 blocks with a small fp16 scale (2^-10) and varied quants; written by all threads so pages are
 * spread like llama.cpp's loader would leave them on one node. */
static void fill_q8_0(uint8_t *p, size_t bytes) {
  const size_t nblk = bytes / 34;
  #pragma omp parallel for schedule(static)
  for (size_t b = 0; b < nblk; ++b) {
    uint8_t *q = p + b * 34;
    q[0] = 0x00;
    q[1] = 0x14;
    for (int j = 0; j < 32; ++j) q[2 + j] = (uint8_t)((int)((b * 131 + (size_t)j * 7) & 0x3f) - 32);
  }
}

typedef struct {
  const options *o;
  size_t mat_bytes;          /* one expert's matrix (embd x ff Q8_0) */
  uint8_t *weights;          /* blocks x 3 matrices x experts */
  struct ggml_tensor *up[MAX_BLOCKS], *gate[MAX_BLOCKS], *down[MAX_BLOCKS];
} model;

static uint8_t *expert_matrix(const model *m, int block, int which, int expert) {
  return m->weights + (((size_t)block * 3 + which) * m->o->experts + expert) * m->mat_bytes;
}

/* A graph per block (or one for all) over the shared ids and input. */
typedef struct {
  struct ggml_context *ctx;
  struct ggml_cgraph *graph;
  struct ggml_tensor *ids[MAX_BLOCKS], *out[MAX_BLOCKS];
  int32_t id_data[MAX_BLOCKS][MAX_USED];
} graph_set;

static struct ggml_tensor *moe_block(struct ggml_context *c, const model *m, int b, struct ggml_tensor *x,
                                     struct ggml_tensor *ids, struct ggml_tensor *weights) {
  const options *o = m->o;
  struct ggml_tensor *x3 = ggml_reshape_3d(c, x, o->embd, 1, 1);
  struct ggml_tensor *up = ggml_mul_mat_id(c, m->up[b], x3, ids);
  struct ggml_tensor *gate = ggml_mul_mat_id(c, m->gate[b], x3, ids);
  struct ggml_tensor *h = ggml_swiglu_split(c, gate, up);
  struct ggml_tensor *down = ggml_mul_mat_id(c, m->down[b], h, ids);
  down = ggml_mul(c, down, weights);
  struct ggml_tensor *sum = ggml_view_2d(c, down, o->embd, 1, down->nb[2], 0);
  for (int k = 1; k < o->used; ++k) sum = ggml_add(c, sum, ggml_view_2d(c, down, o->embd, 1, down->nb[2], (size_t)k * down->nb[1]));
  return sum;
}

static int build_graphs(const model *m, int per_block, graph_set *gs, int *ngraphs, float *x_data, float *w_data) {
  const options *o = m->o;
  *ngraphs = per_block ? o->blocks : 1;
  for (int g = 0; g < *ngraphs; ++g) {
    struct ggml_init_params p = {(size_t)(o->blocks + 1) * (o->used + 16) * ggml_tensor_overhead() + ggml_graph_overhead() + (1 << 20), NULL, true};
    gs[g].ctx = ggml_init(p);
    if (!gs[g].ctx) return -1;
    gs[g].graph = ggml_new_graph(gs[g].ctx);
    int b0 = per_block ? g : 0, b1 = per_block ? g + 1 : o->blocks;
    for (int b = b0; b < b1; ++b) {
      /* Every block reads the same input (the benchmark times reads, not a model), so the graphs are
       * independent of each other's outputs and each block's output can be checked alone. */
      struct ggml_tensor *x = ggml_new_tensor_1d(gs[g].ctx, GGML_TYPE_F32, o->embd);
      x->data = x_data;
      struct ggml_tensor *w = ggml_new_tensor_3d(gs[g].ctx, GGML_TYPE_F32, 1, o->used, 1);
      w->data = w_data;
      struct ggml_tensor *ids = ggml_new_tensor_2d(gs[g].ctx, GGML_TYPE_I32, o->used, 1);
      ids->data = gs[g].id_data[b];
      gs[g].ids[b] = ids;
      struct ggml_tensor *out = moe_block(gs[g].ctx, m, b, x, ids, w);
      gs[g].out[b] = out;
      ggml_build_forward_expand(gs[g].graph, out);
    }
  }
  return 0;
}

/* Gives each graph's intermediate tensors memory (weights and inputs already point somewhere). */
static uint8_t *allocate_intermediates(graph_set *gs, int ngraphs) {
  size_t total = 0;
  for (int g = 0; g < ngraphs; ++g)
    for (int i = 0; i < ggml_graph_n_nodes(gs[g].graph); ++i) {
      struct ggml_tensor *t = ggml_graph_node(gs[g].graph, i);
      if (!t->data && !t->view_src) total += GGML_PAD(ggml_nbytes(t), 64);
    }
  uint8_t *mem = aligned_alloc(64, GGML_PAD(total, 64) + 64), *p = mem;
  if (!mem) return NULL;
  for (int g = 0; g < ngraphs; ++g)
    for (int i = 0; i < ggml_graph_n_nodes(gs[g].graph); ++i) {
      struct ggml_tensor *t = ggml_graph_node(gs[g].graph, i);
      if (!t->data && !t->view_src) { t->data = p; p += GGML_PAD(ggml_nbytes(t), 64); }
    }
  for (int g = 0; g < ngraphs; ++g) /* views take their source's memory */
    for (int i = 0; i < ggml_graph_n_nodes(gs[g].graph); ++i) {
      struct ggml_tensor *t = ggml_graph_node(gs[g].graph, i);
      if (!t->data && t->view_src) t->data = (char *)t->view_src->data + t->view_offs;
    }
  return mem;
}

static void pick_ids(const options *o, unsigned *seed, int32_t ids[MAX_BLOCKS][MAX_USED]) {
  for (int b = 0; b < o->blocks; ++b)
    for (int k = 0; k < o->used; ++k) {
      int e, dup;
      do {
        *seed = *seed * 1103515245u + 12345u;
        e = (int)((*seed >> 8) % (unsigned)o->experts);
        dup = 0;
        for (int j = 0; j < k; ++j) dup |= ids[b][j] == e;
      } while (dup);
      ids[b][k] = e;
    }
}

/* Up to four rows of a Q8_0 matrix (`stride` bytes apart) against one Q8_0 vector, in one pass: each
 * block of the vector is loaded once and each row has its own accumulator, so a thread keeps four
 * independent row streams in flight where ggml's vec_dot keeps one (rows4: the candidate kernel
 * the diagnostic sets beside ggml's). The rows4 method spaces the streams a quarter of the
 * thread's rows apart: on the project's VM four adjacent rows read 3x slower than one row at a
 * time, four spaced ones 1.2-1.9x faster. Q8_0 block: fp16 scale, then 32 int8. */
static void dot_rows_q8_0(int n, int nr, float *out, const uint8_t *x, size_t stride, const uint8_t *y) {
  const int nb = n / 32;
#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
/* unsigned |x| times signed sign(y, x), summed in fours: VNNI where there is one, as ggml does */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define SPILLWAY_I8_DOT(a, b) _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
#else
#define SPILLWAY_I8_DOT(a, b) _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
#endif
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  /* A row past nr repeats the last one (its sum is dropped), so the loop has no branches. */
  const uint8_t *xr[4];
  for (int r = 0; r < 4; ++r) xr[r] = x + (size_t)(r < nr ? r : nr - 1) * stride;
  for (int ib = 0; ib < nb; ++ib) {
    const uint8_t *yb = y + (size_t)ib * 34;
    const __m256i qy = _mm256_loadu_si256((const __m256i *)(yb + 2));
    const float dy = _cvtsh_ss(*(const uint16_t *)yb);
#define SPILLWAY_DOT_ROW(r)                                                                          \
    {                                                                                                \
      const uint8_t *xb = xr[r] + (size_t)ib * 34;                                                   \
      const __m256i qx = _mm256_loadu_si256((const __m256i *)(xb + 2));                              \
      const __m256i ax = _mm256_sign_epi8(qx, qx), sy = _mm256_sign_epi8(qy, qx);                    \
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(*(const uint16_t *)xb) * dy),                \
                               _mm256_cvtepi32_ps(SPILLWAY_I8_DOT(ax, sy)), acc[r]);                 \
    }
    SPILLWAY_DOT_ROW(0) SPILLWAY_DOT_ROW(1) SPILLWAY_DOT_ROW(2) SPILLWAY_DOT_ROW(3)
#undef SPILLWAY_DOT_ROW
  }
  for (int r = 0; r < nr; ++r) {
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    out[r] = _mm_cvtss_f32(v);
  }
#else
  for (int r = 0; r < nr; ++r) {
    float sum = 0;
    for (int ib = 0; ib < nb; ++ib) {
      const uint8_t *xb = x + (size_t)r * stride + (size_t)ib * 34, *yb = y + (size_t)ib * 34;
      int si = 0;
      for (int j = 0; j < 32; ++j) si += (int8_t)xb[2 + j] * (int8_t)yb[2 + j];
      sum += (float)si * ggml_fp16_to_fp32(*(const ggml_fp16_t *)xb) * ggml_fp16_to_fp32(*(const ggml_fp16_t *)yb);
    }
    out[r] = sum;
  }
#endif
}


static void report(const char *method, const options *o, size_t bytes_per_token, double *ms, int n) {
  double sum = 0, best = 1e30;
  for (int i = 0; i < n; ++i) { sum += ms[i]; if (ms[i] < best) best = ms[i]; }
  const double mean = sum / n;
  printf("{\"config\":\"%s\",\"method\":\"%s\",\"memory\":\"%s\",\"threads\":%d,\"blocks\":%d,\"embd\":%d,\"ff\":%d,\"experts\":%d,\"used\":%d,"
         "\"tokens\":%d,\"bytesPerToken\":%zu,\"meanMs\":%.4f,\"bestMs\":%.4f,\"meanGBps\":%.3f,\"bestGBps\":%.3f}\n",
         o->label, method, o->memory, o->threads, o->blocks, o->embd, o->ff, o->experts, o->used, n, bytes_per_token, mean, best,
         bytes_per_token / (mean * 1e-3) / 1e9, bytes_per_token / (best * 1e-3) / 1e9);
  fflush(stdout);
}

/* The scalar reference of one block for --check: the same Q8_0 input quantization ggml uses. */
static void reference_block(const model *m, int b, const int32_t *ids, const float *x, const float *w, float *out) {
  const options *o = m->o;
  const struct ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0);
  const size_t xrow = ggml_row_size(GGML_TYPE_Q8_0, o->embd), hrow = ggml_row_size(GGML_TYPE_Q8_0, o->ff);
  uint8_t *xq = malloc(xrow), *hq = malloc(hrow);
  float *h = malloc(sizeof(float) * o->ff);
  tr->from_float(x, xq, o->embd);
  for (int i = 0; i < o->embd; ++i) out[i] = 0;
  for (int k = 0; k < o->used; ++k) {
    const uint8_t *U = expert_matrix(m, b, 0, ids[k]), *G = expert_matrix(m, b, 1, ids[k]), *D = expert_matrix(m, b, 2, ids[k]);
    for (int r = 0; r < o->ff; ++r) {
      float u, g;
      tr->vec_dot(o->embd, &u, 0, U + r * xrow, 0, xq, 0, 1);
      tr->vec_dot(o->embd, &g, 0, G + r * xrow, 0, xq, 0, 1);
      h[r] = g / (1.0f + expf(-g)) * u;
    }
    tr->from_float(h, hq, o->ff);
    for (int r = 0; r < o->embd; ++r) {
      float d;
      tr->vec_dot(o->ff, &d, 0, D + r * hrow, 0, hq, 0, 1);
      out[r] += d * w[k];
    }
  }
  free(xq);
  free(hq);
  free(h);
}

int main(int argc, char **argv) {
  options o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  omp_set_num_threads(o.threads);
  ggml_cpu_init();

  model m = {.o = &o};
  m.mat_bytes = ggml_row_size(GGML_TYPE_Q8_0, o.embd) * o.ff; /* up/gate: ff rows of embd; down: embd rows of ff: same size */
  const size_t weight_bytes = m.mat_bytes * 3 * o.experts * o.blocks;
  m.weights = alloc_weights(&o, weight_bytes);
  if (!m.weights) return 3;
  fill_q8_0(m.weights, weight_bytes);

  struct ggml_init_params wp = {(size_t)o.blocks * 3 * ggml_tensor_overhead() + (1 << 16), NULL, true};
  struct ggml_context *wctx = ggml_init(wp);
  for (int b = 0; b < o.blocks; ++b) {
    m.up[b] = ggml_new_tensor_3d(wctx, GGML_TYPE_Q8_0, o.embd, o.ff, o.experts);
    m.gate[b] = ggml_new_tensor_3d(wctx, GGML_TYPE_Q8_0, o.embd, o.ff, o.experts);
    m.down[b] = ggml_new_tensor_3d(wctx, GGML_TYPE_Q8_0, o.ff, o.embd, o.experts);
    m.up[b]->data = expert_matrix(&m, b, 0, 0);
    m.gate[b]->data = expert_matrix(&m, b, 1, 0);
    m.down[b]->data = expert_matrix(&m, b, 2, 0);
  }

  float *x = malloc(sizeof(float) * o.embd), *w = malloc(sizeof(float) * o.used);
  for (int i = 0; i < o.embd; ++i) x[i] = (float)((i * 37) % 17 - 8) * 0.05f;
  for (int k = 0; k < o.used; ++k) w[k] = 1.0f / (float)(k + 2);

  const size_t bytes_per_token = m.mat_bytes * 3 * o.used * o.blocks;
  static int32_t ids[MAX_BLOCKS][MAX_USED];
  double *ms = malloc(sizeof(double) * (o.tokens + 2));
  struct ggml_threadpool_params tpp = ggml_threadpool_params_default(o.threads);
  struct ggml_threadpool *pool = ggml_threadpool_new(&tpp);
  int failed_check = 0;

  for (int per_block = 1; per_block >= 0; --per_block) {
    const char *name = per_block ? "ggml-blocks" : "ggml-token";
    if (!wants(&o, name)) continue;
    static graph_set gs[MAX_BLOCKS];
    int ngraphs;
    if (build_graphs(&m, per_block, gs, &ngraphs, x, w)) return 3;
    uint8_t *inter = allocate_intermediates(gs, ngraphs);
    size_t work = 0;
    for (int g = 0; g < ngraphs; ++g) {
      struct ggml_cplan cp = ggml_graph_plan(gs[g].graph, o.threads, pool);
      if (cp.work_size > work) work = cp.work_size;
    }
    uint8_t *wdata = aligned_alloc(64, GGML_PAD(work, 64) + 64);
    unsigned seed = 12345;
    for (int t = 0; t < o.tokens + 2; ++t) { /* two warm-up tokens, not reported */
      pick_ids(&o, &seed, ids);
      for (int g = 0; g < ngraphs; ++g)
        for (int b = per_block ? g : 0; b < (per_block ? g + 1 : o.blocks); ++b) memcpy(gs[g].ids[b]->data, ids[b], sizeof(int32_t) * o.used);
      const double t0 = now_s();
      for (int g = 0; g < ngraphs; ++g) {
        struct ggml_cplan cp = ggml_graph_plan(gs[g].graph, o.threads, pool);
        cp.work_data = wdata;
        cp.work_size = work;
        if (ggml_graph_compute(gs[g].graph, &cp) != GGML_STATUS_SUCCESS) { fprintf(stderr, "cpu_experts: graph compute failed\n"); return 3; }
      }
      if (t >= 2) ms[t - 2] = (now_s() - t0) * 1e3;
    }
    report(name, &o, bytes_per_token, ms, o.tokens);
    if (o.check && per_block) {
      float *ref = malloc(sizeof(float) * o.embd);
      double worst = 0;
      for (int b = 0; b < o.blocks && b < 4; ++b) {
        reference_block(&m, b, ids[b], x, w, ref);
        const float *got = gs[b].out[b]->data;
        double scale = 1e-6;
        for (int i = 0; i < o.embd; ++i) scale = fmax(scale, fabs(ref[i]));
        for (int i = 0; i < o.embd; ++i) worst = fmax(worst, fabs(got[i] - ref[i]) / scale);
      }
      printf("{\"config\":\"%s\",\"check\":\"ggml-blocks\",\"maxRelError\":%.3e}\n", o.label, worst);
      failed_check = worst > 1e-3;
      free(ref);
    }
    for (int g = 0; g < ngraphs; ++g) ggml_free(gs[g].ctx);
    free(inter);
    free(wdata);
  }

  if (wants(&o, "rows") || wants(&o, "rows4") || wants(&o, "sum")) {
    const struct ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0);
    const size_t xrow = ggml_row_size(GGML_TYPE_Q8_0, o.embd), hrow = ggml_row_size(GGML_TYPE_Q8_0, o.ff);
    uint8_t *xq = aligned_alloc(64, GGML_PAD(xrow, 64)), *hq = aligned_alloc(64, GGML_PAD(hrow, 64));
    float *h = malloc(sizeof(float) * o.ff);
    for (int i = 0; i < o.ff; ++i) h[i] = x[i % o.embd];
    tr->from_float(x, xq, o.embd);
    tr->from_float(h, hq, o.ff);
    float *sink = calloc((size_t)o.threads * 64, sizeof(float));
    if (o.check) { /* rows4 against ggml's vec_dot, every row of one expert of each matrix */
      double worst = 0;
      for (int which = 0; which < 3; ++which) {
        const int rows = which == 2 ? o.embd : o.ff, n = which == 2 ? o.ff : o.embd;
        const size_t row = which == 2 ? hrow : xrow;
        const uint8_t *mat = expert_matrix(&m, 0, which, 0), *y = which == 2 ? hq : xq;
        for (int r = 0; r < rows; r += 4) {
          float four[4];
          const int nr = rows - r < 4 ? rows - r : 4;
          dot_rows_q8_0(n, nr, four, mat + (size_t)r * row, row, y);
          for (int i = 0; i < nr; ++i) {
            float ref;
            tr->vec_dot(n, &ref, 0, mat + (size_t)(r + i) * row, 0, y, 0, 1);
            worst = fmax(worst, fabs(four[i] - ref) / fmax(1e-6, fabs(ref)));
          }
        }
      }
      printf("{\"config\":\"%s\",\"check\":\"rows4\",\"maxRelError\":%.3e}\n", o.label, worst);
      failed_check |= worst > 1e-3;
    }
    for (int method = 0; method < 3; ++method) {
      const char *name = method == 0 ? "rows" : method == 1 ? "rows4" : "sum";
      if (!wants(&o, name)) continue;
      unsigned seed = 12345;
      for (int t = 0; t < o.tokens + 2; ++t) {
        pick_ids(&o, &seed, ids);
        const double t0 = now_s();
        for (int b = 0; b < o.blocks; ++b) {
          #pragma omp parallel
          {
            const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
            float acc = 0;
            for (int which = 0; which < 3; ++which) {
              const int rows = which == 2 ? o.embd : o.ff, n = which == 2 ? o.ff : o.embd;
              const size_t row = which == 2 ? hrow : xrow;
              const int r0 = (int)((long)rows * ith / nth), r1 = (int)((long)rows * (ith + 1) / nth);
              for (int k = 0; k < o.used; ++k) {
                const uint8_t *mat = expert_matrix(&m, b, which, ids[b][k]);
                if (method == 0) {
                  for (int r = r0; r < r1; ++r) {
                    float d;
                    tr->vec_dot(n, &d, 0, mat + r * row, 0, which == 2 ? hq : xq, 0, 1);
                    acc += d;
                  }
                } else if (method == 1) {
                  /* four streams a quarter of the thread's rows apart; the remainder one by one */
                  const int q = (r1 - r0) / 4;
                  for (int r = r0; r < r0 + q; ++r) {
                    float four[4];
                    dot_rows_q8_0(n, 4, four, mat + (size_t)r * row, (size_t)q * row, which == 2 ? hq : xq);
                    for (int i = 0; i < 4; ++i) acc += four[i];
                  }
                  for (int r = r0 + 4 * q; r < r1; ++r) {
                    float one;
                    dot_rows_q8_0(n, 1, &one, mat + (size_t)r * row, row, which == 2 ? hq : xq);
                    acc += one;
                  }
                } else {
                  const uint64_t *p = (const uint64_t *)(mat + (size_t)r0 * row), *e = (const uint64_t *)(mat + (size_t)r1 * row);
                  uint64_t s[8] = {0};
                  for (; p + 8 <= e; p += 8)
                    for (int j = 0; j < 8; ++j) s[j] += p[j];
                  for (int j = 0; j < 8; ++j) acc += (float)s[j];
                }
              }
              /* up and gate finish before down starts, as in the graph */
              if (which == 1) {
                #pragma omp barrier
              }
            }
            sink[ith * 64] += acc;
          }
        }
        if (t >= 2) ms[t - 2] = (now_s() - t0) * 1e3;
      }
      report(name, &o, bytes_per_token, ms, o.tokens);
    }
    free(sink);
    free(h);
    free(xq);
    free(hq);
  }

  ggml_threadpool_free(pool);
  ggml_free(wctx);
  free_weights(&o, m.weights, weight_bytes);
  free(x);
  free(w);
  free(ms);
  return failed_check ? 1 : 0;
}
