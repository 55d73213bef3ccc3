/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* spw.h - internal declarations shared by the spillway module's source files. */
#ifndef SPW_H
#define SPW_H

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/sched/user.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/spinlock.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "uapi/spillway.h"

#define SPW_NAME "spillway"

/* ---- kernel API differences this module spans (6.1 .. current) ---- */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define spw_vm_flags_set(vma, f) vm_flags_set(vma, f)
#else
#define spw_vm_flags_set(vma, f) ((vma)->vm_flags |= (f))
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#define spw_pin_user_pages(start, n, flags, pages) pin_user_pages(start, n, flags, pages)
#else
#define spw_pin_user_pages(start, n, flags, pages) pin_user_pages(start, n, flags, pages, NULL)
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#define SPW_DEVNODE_CONST const
#define spw_dma_buf_vmap(db, map) dma_buf_vmap_unlocked(db, map)
#define spw_dma_buf_vunmap(db, map) dma_buf_vunmap_unlocked(db, map)
#define spw_dma_buf_map(at, dir) dma_buf_map_attachment_unlocked(at, dir)
#define spw_dma_buf_unmap(at, sgt, dir) dma_buf_unmap_attachment_unlocked(at, sgt, dir)
#else
/* 6.1: these take the dma-buf's own lock; our exporter is not dynamic, so no resv lock needed */
#define SPW_DEVNODE_CONST
#define spw_dma_buf_vmap(db, map) dma_buf_vmap(db, map)
#define spw_dma_buf_vunmap(db, map) dma_buf_vunmap(db, map)
#define spw_dma_buf_map(at, dir) dma_buf_map_attachment(at, dir)
#define spw_dma_buf_unmap(at, sgt, dir) dma_buf_unmap_attachment(at, sgt, dir)
#endif

/* newer kernels dropped nth_page(): a compound page's struct pages are contiguous there */
#ifndef nth_page
#define nth_page(page, n) ((page) + (n))
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
#define spw_class_create(name) class_create(name)
#else
#define spw_class_create(name) class_create(THIS_MODULE, name)
#endif

/* ---- module parameters (main.c) ---- */
extern unsigned int spw_pressure_moderate_mb;
extern unsigned int spw_pressure_critical_mb;
extern unsigned int spw_pressure_interval_ms;
extern unsigned long spw_user_quota_bytes;

/* ---- pool: accounting, limit, pressure (pool.c) ---- */
struct spw_pool {
	spinlock_t lock;            /* guards limit, used, peak */
	u64 limit;
	u64 used;
	u64 peak;
	atomic64_t buffers;
	atomic64_t allocs_total;
	atomic64_t frees_total;
	atomic64_t failed_total;
	atomic64_t chunks[SPILLWAY_NR_ORDERS];
	atomic64_t next_id;

	struct mutex list_lock;     /* guards list (read by sysfs pool_info) */
	struct list_head list;
	struct list_head users;     /* struct spw_user, guarded by lock */

	/* pressure: written only by the worker */
	int pressure;
	u64 mem_available;
	atomic64_t pressure_events;
	wait_queue_head_t wq;
	struct delayed_work work;
	struct device *dev;         /* for sysfs_notify of "pressure" */
};

extern struct spw_pool spw_pool;

/* What one user (uid) holds in the pool, for the per-user quota (user_quota_bytes). */
struct spw_user {
	struct list_head node;      /* in spw_pool.users */
	kuid_t uid;
	u64 bytes;
	u64 buffers;
};

void spw_pool_init(u64 limit);
int spw_pool_reserve(u64 bytes, kuid_t uid);
void spw_pool_unreserve(u64 bytes, kuid_t uid);
void spw_pool_exit(void);
int spw_pool_set_limit(u64 limit, u64 *old);
u64 spw_pool_limit(void);
u64 spw_pool_used(void);
void spw_pool_fill_info(struct spillway_pool_info *info);
void spw_pressure_start(struct device *dev);
void spw_pressure_stop(void);
const char *spw_pressure_name(int state);
ssize_t spw_pool_info_show(char *buf);

/* ---- buffers and their DMA-BUF (buffer.c) ---- */
struct spw_chunk {
	struct page *page;          /* compound head when order > 0 */
	unsigned int order;
};

struct spw_buf {
	struct list_head node;      /* in spw_pool.list */
	u64 id;
	u64 size;
	unsigned int nr_chunks;
	unsigned int min_order;
	struct spw_chunk *chunks;
	pid_t tgid;                 /* owner: the allocating process (init pid namespace) */
	char comm[TASK_COMM_LEN];
	kuid_t uid;                 /* owner's real uid: the per-user pool quota */
	bool reserved;              /* size is taken out of the pool (and the uid's quota) */
	/*
	 * RLIMIT_MEMLOCK charges, both undone at release. The user's (user_struct.locked_vm, as
	 * io_uring charges) is what bounds the user: it stays while the buffer lives, whichever
	 * process holds it, so exec or passing the fd to another process and exiting cannot reset it.
	 * The mm's (mm->locked_vm, shown as VmLck) is the allocating process's view of the same pages.
	 */
	struct user_struct *user;   /* get_uid'd when locked_pages were charged to it */
	struct mm_struct *mm;       /* mmgrab'd when locked_pages were charged to it */
	unsigned long locked_pages;
	struct mutex lock;          /* guards vaddr */
	void *vaddr;                /* kernel mapping while vmapped */
};

extern const struct dma_buf_ops spw_dmabuf_ops;

long spw_ioctl_alloc(struct file *file, void __user *uarg);

/*
 * ---- debug ioctls and fault injection (debug.c): test builds only ----
 * debug.c is compiled only with `make SPILLWAY_DEBUG=1` (the qemu test bed does); a production
 * build has no debug ioctls (-ENOTTY), no debug_* parameters and no fault injection.
 */
#ifdef SPILLWAY_DEBUG
extern bool spw_debug_ioctls;
extern unsigned int spw_debug_fail_above_order;
int spw_debug_init(void);
void spw_debug_exit(void);
long spw_debug_ioctl(unsigned int cmd, void __user *uarg);
/* fault injection for the fallback tests: pretend pages above an order are unavailable */
static inline bool spw_debug_fail_order(unsigned int order)
{
	return spw_debug_ioctls && order > READ_ONCE(spw_debug_fail_above_order);
}
#else
#define spw_debug_ioctls false
static inline int spw_debug_init(void) { return 0; }
static inline void spw_debug_exit(void) { }
static inline long spw_debug_ioctl(unsigned int cmd, void __user *uarg) { return -ENOTTY; }
static inline bool spw_debug_fail_order(unsigned int order) { return false; }
#endif

#endif /* SPW_H */
