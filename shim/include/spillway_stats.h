/*
 * spillway_stats.h: the per-process statistics record of the spillway shim.
 *
 * The shim keeps one record per process in a file
 * `<SPILLWAY_STATS_DIR>/spillway-<euid>/<pid>-<start ticks>-<pid namespace inode>` (default /dev/shm;
 * directory 0700, file 0600), mapped shared, written from process memory, never read back by the
 * shim, removed at exit (readers remove those of dead processes). shim/stats.ts mirrors this layout; a test
 * compiles a program printing sizeof/offsetof and compares. Change the layout only together with
 * SPILLWAY_STATS_VERSION and shim/stats.ts.
 *
 * Consistency: the writer increments `seq` to an odd value before an update and to the next even
 * value after it; a reader copies the record and retries while `seq` is odd or changed.
 * All fields are little-endian 64-bit (or 32-bit where noted), naturally aligned, no padding.
 */
#ifndef SPILLWAY_STATS_H
#define SPILLWAY_STATS_H

#include <stdint.h>

#define SPILLWAY_STATS_MAGIC 0x5457534c4c495053ULL /* "SPILLSWT" little-endian */
#define SPILLWAY_STATS_VERSION 1

/* Tiers, index into spillway_stats.tiers. */
#define SPILLWAY_TIER_VRAM 0        /* device memory */
#define SPILLWAY_TIER_HOST_VMM 1    /* host memory mapped through CUDA VMM (HOST_NUMA location) */
#define SPILLWAY_TIER_HOST_MAPPED 2 /* mapped pinned host memory (cuMemHostAlloc DEVICEMAP) */
#define SPILLWAY_TIER_HOST_KMOD 3   /* /dev/spillway pool buffer, registered with cuMemHostRegister */
#define SPILLWAY_TIERS 4

/* Backing modes (spillway_stats.backing). */
#define SPILLWAY_BACKING_AUTO 0
#define SPILLWAY_BACKING_KMOD 1
#define SPILLWAY_BACKING_VMM 2
#define SPILLWAY_BACKING_MAPPED 3

/* Report modes (spillway_stats.report_mode). */
#define SPILLWAY_REPORT_VRAM 0
#define SPILLWAY_REPORT_VRAM_HOST 1
#define SPILLWAY_REPORT_SIZE 2

struct spillway_tier_stats {
  uint64_t bytes;       /* bytes placed in this tier now */
  uint64_t allocs;      /* live allocations holding bytes in this tier */
  uint64_t peak_bytes;  /* most bytes at once */
  uint64_t total_bytes; /* bytes ever placed (cumulative) */
};

struct spillway_stats {
  uint64_t magic;          /* SPILLWAY_STATS_MAGIC */
  uint32_t version;        /* SPILLWAY_STATS_VERSION */
  uint32_t size;           /* sizeof(struct spillway_stats) */
  uint32_t pid;            /* owning process */
  uint32_t backing;        /* SPILLWAY_BACKING_*: configured mode */
  uint64_t seq;            /* odd while being written */
  uint64_t start_ns;       /* CLOCK_REALTIME at creation */
  uint64_t update_ns;      /* CLOCK_REALTIME at the last update */
  uint64_t vram_budget;    /* bytes of VRAM allocations may use (device 0 or the first used) */
  uint64_t reserve;        /* SPILLWAY_RESERVE */
  uint64_t min_spill;      /* SPILLWAY_MIN_SPILL */
  uint64_t host_limit;     /* SPILLWAY_HOST_LIMIT resolved */
  uint32_t report_mode;    /* SPILLWAY_REPORT_* */
  uint32_t flags;          /* bit 0: disabled (SPILLWAY_DISABLE=1); bit 1: VMM host unsupported, fell back to mapped */
  uint64_t report_size;    /* total reported when report_mode is SIZE */
  struct spillway_tier_stats tiers[SPILLWAY_TIERS];
  uint64_t allocs;         /* allocations the shim handled (cumulative) */
  uint64_t frees;          /* frees of shim-tracked pointers (cumulative) */
  uint64_t passthrough_frees; /* frees of pointers the shim did not track, passed to CUDA */
  uint64_t spills;         /* allocations that placed any bytes in host memory */
  uint64_t splits;         /* allocations split VRAM head + host tail */
  uint64_t failures;       /* allocations answered with an out-of-memory or other error */
  uint64_t host_failures;  /* host backing attempts that failed */
  uint64_t largest_alloc;  /* largest requested size */
  uint64_t largest_spill;  /* largest host part of one allocation */
};

#define SPILLWAY_STATS_FLAG_DISABLED 1u
#define SPILLWAY_STATS_FLAG_VMM_HOST_UNSUPPORTED 2u

#endif
