/*
 * spillway CPU RAM read bandwidth: N threads each sum their own slice of one large buffer.
 * Built with gcc by engine/hardware/measure/cpu.ts at first use (cached), never at install time.
 *
 * usage: cpu_bw <threads> <bytes> <repeats> [tuned|simple]
 * prints one JSON object: {"threads":N,"bytes":B,"mode":M,"gbps":[...one per repeat...],"checksum":X}
 *
 * tuned (default): each thread first-touches its own slice (so pages land on its NUMA node) and
 * sums it with eight independent accumulators (vectorized). simple: the main thread fills the whole
 * buffer, each thread sums its slice with one scalar accumulator, the way a plain summing loop
 * does; it exists to compare with reference figures taken by such programs. In both, all threads
 * start together at a barrier; the time of one repeat is from the first thread's start to the last
 * thread's end.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef struct {
  const uint64_t *p;
  size_t n; /* words */
  int repeats;
  uint64_t sum;
  double *start; /* this thread's start time per repeat */
  double *end;   /* this thread's end time per repeat */
} job_t;

static pthread_barrier_t barrier;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t sum_words(const uint64_t *p, size_t n) {
  /* Eight independent accumulators keep enough loads in flight; gcc vectorizes this loop. */
  uint64_t a[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) a[k] += p[i + k];
  for (; i < n; i++) a[0] += p[i];
  uint64_t s = 0;
  for (int k = 0; k < 8; k++) s += a[k];
  return s;
}

/* One dependent chain of scalar adds, not vectorized: what a plain `s += p[i]` loop compiles to. */
__attribute__((optimize("no-tree-vectorize", "no-unroll-loops"))) static uint64_t sum_words_simple(
    const uint64_t *p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s += p[i];
  return s;
}

static int simple_mode;

static void *worker(void *arg) {
  job_t *j = arg;
  if (!simple_mode) memset((void *)j->p, 1, j->n * sizeof(uint64_t)); /* first touch */
  for (int r = 0; r < j->repeats; r++) {
    pthread_barrier_wait(&barrier);
    j->start[r] = now();
    j->sum += simple_mode ? sum_words_simple(j->p, j->n) : sum_words(j->p, j->n);
    j->end[r] = now();
    pthread_barrier_wait(&barrier);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s <threads> <bytes> <repeats> [tuned|simple]\n", argv[0]);
    return 2;
  }
  if (argc == 5) {
    if (strcmp(argv[4], "simple") == 0) simple_mode = 1;
    else if (strcmp(argv[4], "tuned") != 0) {
      fprintf(stderr, "cpu_bw: mode must be tuned or simple, not '%s'\n", argv[4]);
      return 2;
    }
  }
  int threads = atoi(argv[1]);
  size_t bytes = strtoull(argv[2], NULL, 10);
  int repeats = atoi(argv[3]);
  if (threads < 1 || threads > 4096 || bytes < 4096 || repeats < 1 || repeats > 1000) {
    fprintf(stderr, "cpu_bw: bad arguments (threads 1..4096, bytes >= 4096, repeats 1..1000)\n");
    return 2;
  }
  size_t words = bytes / sizeof(uint64_t);
  size_t per = words / threads;
  if (per == 0) {
    fprintf(stderr, "cpu_bw: buffer too small for %d threads\n", threads);
    return 2;
  }
  uint64_t *buf = mmap(NULL, per * threads * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) {
    perror("cpu_bw: mmap");
    return 1;
  }
  job_t *jobs = calloc(threads, sizeof(job_t));
  pthread_t *tids = calloc(threads, sizeof(pthread_t));
  double *starts = calloc((size_t)threads * repeats, sizeof(double));
  double *ends = calloc((size_t)threads * repeats, sizeof(double));
  if (!jobs || !tids || !starts || !ends) {
    fprintf(stderr, "cpu_bw: out of memory\n");
    return 1;
  }
  if (simple_mode) memset(buf, 1, per * threads * sizeof(uint64_t)); /* main thread touches all */
  pthread_barrier_init(&barrier, NULL, threads);
  for (int t = 0; t < threads; t++) {
    jobs[t] = (job_t){buf + per * t, per, repeats, 0, starts + (size_t)t * repeats, ends + (size_t)t * repeats};
    if (pthread_create(&tids[t], NULL, worker, &jobs[t]) != 0) {
      fprintf(stderr, "cpu_bw: pthread_create failed\n");
      return 1;
    }
  }
  uint64_t checksum = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tids[t], NULL);
    checksum += jobs[t].sum;
  }
  printf("{\"threads\":%d,\"bytes\":%zu,\"mode\":\"%s\",\"gbps\":[", threads,
         per * threads * sizeof(uint64_t), simple_mode ? "simple" : "tuned");
  for (int r = 0; r < repeats; r++) {
    double first = starts[r], last = 0;
    for (int t = 0; t < threads; t++) {
      if (starts[(size_t)t * repeats + r] < first) first = starts[(size_t)t * repeats + r];
      if (ends[(size_t)t * repeats + r] > last) last = ends[(size_t)t * repeats + r];
    }
    double secs = last - first;
    printf("%s%.3f", r ? "," : "", (double)(per * threads * sizeof(uint64_t)) / secs / 1e9);
  }
  printf("],\"checksum\":%llu}\n", (unsigned long long)checksum);
  munmap(buf, per * threads * sizeof(uint64_t));
  return 0;
}
