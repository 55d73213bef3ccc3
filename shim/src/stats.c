/*
 * The per-process stats record, and the control API the library exports.
 *
 * The counters live in process memory (sw_stats) and are the only ones the shim reads; the file
 * `<SPILLWAY_STATS_DIR>/spillway-<euid>/<pid>-<start>-<pidns>` is a mirror written after each update
 * for `spillway top`, never read back. The directory is private to the user (created 0700, checked
 * with lstat: a real directory, owned by the effective uid, no group/other access) and the record is
 * created with O_EXCL|O_NOFOLLOW, mode 0600, so nothing another user planted is followed or trusted.
 * The name carries the process start time (/proc/self/stat) and the pid namespace's inode, so two
 * processes never share one, and readers can tell a dead process's record (shim/stats.ts removes those).
 */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct spillway_stats local_stats; /* authoritative: the shim reads only this */
struct spillway_stats *sw_stats = &local_stats;
static struct spillway_stats *pub;         /* the shared mirror, written only */
static int record_wanted;                  /* this process publishes a record (CUDA was used) */
static int record_failed;                  /* creating it failed: do not retry on every update */
static char stats_path[640];
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

/* Copy the in-process record to the mirror under the seq protocol (sw_lock held). */
static void publish_locked(void) {
  if (!pub) return;
  const size_t seq_at = offsetof(struct spillway_stats, seq), body = seq_at + sizeof(uint64_t);
  uint64_t seq = local_stats.seq | 1; /* odd: a reader retries */
  __atomic_store_n(&pub->seq, seq, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  memcpy(pub, &local_stats, seq_at);
  memcpy((char *)pub + body, (const char *)&local_stats + body, sizeof local_stats - body);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&pub->seq, seq + 1, __ATOMIC_RELAXED);
}

static void open_locked(void);

void sw_stats_begin(void) {
  __atomic_store_n(&sw_stats->seq, sw_stats->seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}
void sw_stats_end(void) {
  sw_stats->update_ns = now_ns();
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&sw_stats->seq, (sw_stats->seq | 1) + 1, __ATOMIC_RELAXED);
  /* A forked child publishes its record from its first update on (see atfork_child). */
  if (record_wanted && !pub && !record_failed) open_locked();
  publish_locked();
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

/* This process's start time in clock ticks after boot (field 22 of /proc/self/stat), 0 if unknown. */
static unsigned long long start_ticks(void) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
  if (!p) return 0;
  /* After ") " come fields 3 (state) .. : skip 19 of them to reach field 22. */
  p++;
  for (int field = 2; field < 21 && p; field++) p = strchr(p + 1, ' ');
  return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Inode of this process's pid namespace (distinguishes equal pids of containers sharing /dev/shm). */
static unsigned long long pidns_inode(void) {
  struct stat st;
  return stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

/* <stats_dir>/spillway-<euid>, created 0700 if missing; 0 when it is a private directory of ours. */
static int private_dir(char *dir, size_t len) {
  uid_t uid = geteuid();
  snprintf(dir, len, "%s/spillway-%u", sw_cfg.stats_dir, (unsigned)uid);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    SW_WARN("cannot create the stats directory %s: %s (stats stay in-process)", dir, strerror(errno));
    return -1;
  }
  struct stat st;
  if (lstat(dir, &st) != 0) {
    SW_WARN("cannot inspect the stats directory %s: %s (stats stay in-process)", dir, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != uid || (st.st_mode & 077)) {
    SW_WARN("stats directory %s is not a private directory of uid %u (%s, owner %u, mode %03o): "
            "not used, stats stay in-process",
            dir, (unsigned)uid, S_ISLNK(st.st_mode) ? "a symbolic link" : S_ISDIR(st.st_mode) ? "directory" : "not a directory",
            (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
    return -1;
  }
  return 0;
}

/* Create this process's record file and start mirroring into it (sw_lock held or single-threaded). */
static void open_locked(void) {
  char dir[sizeof stats_path - 64];
  record_wanted = 1;
  if (private_dir(dir, sizeof dir)) {
    record_failed = 1;
    return;
  }
  snprintf(stats_path, sizeof stats_path, "%s/%d-%llu-%llu", dir, (int)getpid(), start_ticks(), pidns_inode());
  int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = open(stats_path, flags, 0600);
  if (fd < 0 && errno == EEXIST) {
    /* The name is this very process (pid, start time, namespace) in our private directory: the
     * record of the program this process was before an exec, which had no chance to remove it. */
    unlink(stats_path);
    fd = open(stats_path, flags, 0600);
  }
  if (fd < 0) {
    SW_WARN("cannot create the stats record %s: %s (stats stay in-process)", stats_path, strerror(errno));
    stats_path[0] = 0;
    record_failed = 1;
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
    record_failed = 1;
    return;
  }
  pub = p;
  stats_owner = getpid();
  local_stats.pid = (uint32_t)stats_owner;
  publish_locked();
  SW_DEBUG("stats record %s", stats_path);
}

void sw_stats_open(void) {
  pthread_mutex_lock(&sw_lock);
  if (!pub && !record_failed) open_locked();
  pthread_mutex_unlock(&sw_lock);
}

static void atfork_prepare(void) { pthread_mutex_lock(&sw_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&sw_lock); }
static void atfork_child(void) {
  /* CUDA state does not cross fork: the child starts with no allocations, and writes no record
   * (and never the parent's) until its own first stats update: a worker that never touches CUDA
   * leaves no file. */
  if (pub) munmap(pub, sizeof *pub);
  pub = NULL;
  stats_path[0] = 0;
  record_failed = 0;
  memset(local_stats.tiers, 0, sizeof local_stats.tiers);
  local_stats.pid = (uint32_t)getpid();
  local_stats.start_ns = now_ns();
  sw_alloc_forget_locked();
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
