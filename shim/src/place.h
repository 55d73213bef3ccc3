/*
 * Internal to placement: the record of one placed allocation, the per-device budget state, and the
 * functions the placement units (decide.c, backings.c, account.c, alloc.c) give each other.
 */
#ifndef SPILLWAY_PLACE_H
#define SPILLWAY_PLACE_H

#include "shim.h"

/* Kinds of placed allocation; SW_K_MANAGED is the program's managed memory (VRAM-counted or host-preferred). */
enum { SW_K_VRAM = 0, SW_K_VMM, SW_K_MAPPED, SW_K_KMOD, SW_K_MANAGED };
extern const char *const sw_kind_name[];

/* One live allocation the shim placed. */
struct sw_rec {
  struct sw_rec *next;
  CUdeviceptr ptr;
  uint64_t size; /* requested bytes */
  uint64_t vram; /* device bytes it holds */
  uint64_t host; /* host bytes it holds */
  void *hostp;   /* host address (mapped, kmod) */
  int kind, dev, fd;
  int in_reserve; /* placed whole in the reserve after the budget was spent */
  CUcontext ctx;  /* the context it was made in: its free waits for that context's work */
  CUstream stream; /* a deferred free: the stream it was freed on while that stream was capturing */
};

/* Budget state of one device. */
struct sw_dev {
  int inited;
  int has_budget_override;
  uint64_t budget_override;
  uint64_t budget;
  uint64_t vram_used; /* shim-placed VRAM bytes, including reservations in flight */
  uint64_t gran;
  int numa;
  int vmm;
  uint64_t reserve_live; /* live allocations placed whole in the reserve */
};
extern struct sw_dev sw_devs[SW_MAX_DEVICES];
extern uint64_t sw_host_used; /* host bytes, including reservations in flight (sw_lock) */

static inline uint64_t sw_round_up(uint64_t x, uint64_t g) { return (x + g - 1) / g * g; }
static inline uint64_t sw_round_down(uint64_t x, uint64_t g) { return x / g * g; }
static inline double sw_mib(uint64_t b) { return (double)b / 1048576.0; }

/* ---- decide.c: budgets and the placement decision ---- */
void sw_dev_init(int dev); /* budget, granularity, NUMA node; needs the device's context current */
int sw_dev_init_any(int dev); /* the same from any thread, through dev's active primary context; 0: could not */
enum { SW_DECIDE_OK = 0, SW_DECIDE_HOST_LIMIT, SW_DECIDE_TOO_BIG };
/* Fill rec (kind, vram, host, in_reserve) and *why for one attempt, and reserve its bytes in the
 * device and host counters (sw_lock held). Anything but SW_DECIDE_OK reserves nothing. */
int sw_decide_locked(struct sw_rec *rec, const struct sw_rule *rule, int force_host, const char **why);
void sw_unreserve_locked(const struct sw_rec *rec); /* give back what sw_decide_locked reserved */
/* The decision for an allocation that cannot be split (the program's cuMemCreate, managed memory):
 * VRAM (size reserved on the device), host (host_bytes reserved) or refused (over the host limit).
 * Allocations below min_spill stay in VRAM. */
enum { SW_WHOLE_VRAM = 0, SW_WHOLE_HOST, SW_WHOLE_REFUSED };
int sw_decide_whole_locked(int dev, uint64_t size, uint64_t host_bytes, int force_host, uint64_t min_spill, int *in_reserve);
uint64_t sw_avail_locked(int dev);                  /* budget left on a device */
int sw_host_fits_locked(uint64_t bytes);            /* under SPILLWAY_HOST_LIMIT */
int sw_vmm_usable(int dev);
void sw_note_vmm_host_unsupported(void);
int sw_vmm_host_unsupported(void);

/* ---- backings.c: host memory the GPU reads in place ---- */
int sw_backing_choose(int dev, int split);
uint64_t sw_kmod_round(uint64_t size);
/* Build the allocation rec describes (not VRAM); on failure nothing is left behind. */
CUresult sw_backing_alloc(struct sw_rec *rec, int *head_failed, int *host_unsupported);
void sw_backing_free(const struct sw_rec *rec);
void sw_backing_forget_in_child(const struct sw_rec *rec); /* fork child: drop what it inherited */
void sw_backings_forget_in_child(void);
int sw_host_tier(int kind);

/* ---- account.c: the table of live allocations and the stats ---- */
void sw_table_insert_locked(struct sw_rec *r);
struct sw_rec *sw_table_remove_locked(CUdeviceptr p);
void sw_commit_locked(const struct sw_rec *r);
void sw_release_locked(struct sw_rec *r);
void sw_drain_deferred(void); /* free host-backed memory whose free waited for a stream capture to end */
int sw_report_host(void); /* whether every allocation path can place in host memory (reports add it) */

#endif
