/* The per-process stats record in shared memory, and the control API the library exports. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static struct spillway_stats local_stats; /* used until (or instead of) the shared file */
struct spillway_stats *sw_stats = &local_stats;
static char stats_path[600];
static pid_t stats_owner; /* the pid that created stats_path: only it removes the file */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fill_header(struct spillway_stats *s) {
  s->magic = SPILLWAY_STATS_MAGIC;
  s->version = SPILLWAY_STATS_VERSION;
  s->size = sizeof *s;
  s->pid = (uint32_t)getpid();
  s->backing = (uint32_t)sw_cfg.backing;
  s->start_ns = s->update_ns = now_ns();
  s->reserve = sw_cfg.reserve;
  s->min_spill = sw_cfg.min_spill;
  s->host_limit = sw_cfg.host_limit;
  s->report_mode = (uint32_t)sw_cfg.report_mode;
  s->report_size = sw_cfg.report_size;
  s->flags = sw_cfg.disabled ? SPILLWAY_STATS_FLAG_DISABLED : 0;
  if (sw_cfg.has_budget && !s->vram_budget) s->vram_budget = sw_cfg.budget;
}

void sw_stats_begin(void) {
  __atomic_store_n(&sw_stats->seq, sw_stats->seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}
void sw_stats_end(void) {
  sw_stats->update_ns = now_ns();
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&sw_stats->seq, sw_stats->seq + 1, __ATOMIC_RELAXED);
}
void sw_stats_tier_add(int tier, uint64_t bytes) {
  struct spillway_tier_stats *t = &sw_stats->tiers[tier];
  t->bytes += bytes;
  t->allocs++;
  t->total_bytes += bytes;
  if (t->bytes > t->peak_bytes) t->peak_bytes = t->bytes;
}
void sw_stats_tier_sub(int tier, uint64_t bytes) {
  struct spillway_tier_stats *t = &sw_stats->tiers[tier];
  t->bytes -= bytes;
  t->allocs--;
}

/* Create <dir>/spillway.<pid> and move the record there (sw_lock held or single-threaded). */
static void open_locked(void) {
  snprintf(stats_path, sizeof stats_path, "%s/spillway.%d", sw_cfg.stats_dir, (int)getpid());
  int fd = open(stats_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    SW_WARN("cannot create the stats record %s: %s (stats stay in-process)", stats_path, strerror(errno));
    stats_path[0] = 0;
    return;
  }
  void *p = MAP_FAILED;
  if (ftruncate(fd, sizeof(struct spillway_stats)) == 0)
    p = mmap(NULL, sizeof(struct spillway_stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (p == MAP_FAILED) {
    SW_WARN("cannot map the stats record %s: %s (stats stay in-process)", stats_path, strerror(err));
    unlink(stats_path);
    stats_path[0] = 0;
    return;
  }
  struct spillway_stats *s = p;
  *s = *sw_stats;
  s->pid = (uint32_t)getpid();
  sw_stats = s;
  stats_owner = getpid();
  SW_DEBUG("stats record %s", stats_path);
}

void sw_stats_open(void) {
  pthread_mutex_lock(&sw_lock);
  if (sw_stats == &local_stats) open_locked();
  pthread_mutex_unlock(&sw_lock);
}

static void atfork_prepare(void) { pthread_mutex_lock(&sw_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&sw_lock); }
static void atfork_child(void) {
  /* The child gets its own record, with no allocations: CUDA state does not cross fork. */
  int had_file = sw_stats != &local_stats;
  local_stats = *sw_stats;
  if (had_file) munmap(sw_stats, sizeof *sw_stats);
  sw_stats = &local_stats;
  memset(local_stats.tiers, 0, sizeof local_stats.tiers);
  local_stats.pid = (uint32_t)getpid();
  local_stats.start_ns = now_ns();
  sw_alloc_forget_locked();
  stats_path[0] = 0;
  if (had_file) open_locked();
  pthread_mutex_unlock(&sw_lock);
}

__attribute__((constructor(102))) static void stats_constructor(void) {
  fill_header(&local_stats);
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

__attribute__((destructor)) static void stats_destructor(void) {
  if (stats_path[0] && stats_owner == getpid()) unlink(stats_path);
}

/* ---- control API ---- */

/** Shim version: (major << 16) | (minor << 8) | patch. */
SW_EXPORT uint32_t spillway_shim_version(void) {
  return (SW_VERSION_MAJOR << 16) | (SW_VERSION_MINOR << 8) | SW_VERSION_PATCH;
}

/** Copy up to len bytes of a consistent stats record into buf; returns the record's full size, -1 on bad input. */
SW_EXPORT int spillway_shim_stats(void *buf, size_t len) {
  if (!buf && len) return -1;
  pthread_mutex_lock(&sw_lock);
  memcpy(buf, sw_stats, len < sizeof *sw_stats ? len : sizeof *sw_stats);
  pthread_mutex_unlock(&sw_lock);
  return (int)sizeof(struct spillway_stats);
}

/** Set the VRAM budget of one device (or all with device -1); applies to later allocations. 0 or -EINVAL. */
SW_EXPORT int spillway_shim_set_budget(int device, uint64_t bytes) { return sw_set_budget(device, bytes); }
