/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * spillway.h - userspace ABI of the spillway kernel module (/dev/spillway).
 *
 * Shared by the module (kmod/src), the guest C tests (kmod/testbed/guest), the CUDA shim (shim/)
 * and mirrored in TypeScript by kmod/uapi.ts (test/kmod_uapi.test.ts compares the two).
 *
 * Rules that keep this ABI stable:
 *  - every struct has an explicit layout: only __u32/__s32/__u64/__s64 members, padding spelled
 *    out as named fields, sizes a multiple of 8, so i386/x86_64 and every compiler agree;
 *  - every ioctl is _IOWR and every struct has input fields the caller must zero (flags,
 *    reserved): the module rejects non-zero ones with -EINVAL, so a later version can give them a
 *    meaning without old modules silently ignoring a request they do not understand;
 *  - SPILLWAY_UAPI_VERSION changes major on any incompatible change (callers compare
 *    SPILLWAY_UAPI_MAJOR(version)), minor when something is only added.
 */
#ifndef _UAPI_SPILLWAY_H
#define _UAPI_SPILLWAY_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SPILLWAY_UAPI_VERSION_MAJOR 1
#define SPILLWAY_UAPI_VERSION_MINOR 0
#define SPILLWAY_UAPI_VERSION ((SPILLWAY_UAPI_VERSION_MAJOR << 16) | SPILLWAY_UAPI_VERSION_MINOR)
#define SPILLWAY_UAPI_MAJOR(v) ((v) >> 16)
#define SPILLWAY_UAPI_MINOR(v) ((v) & 0xffff)

#define SPILLWAY_DEVICE_PATH "/dev/spillway"
#define SPILLWAY_SYSFS_DIR "/sys/class/spillway/spillway"

/* Buffers are made of physically contiguous chunks of 2^SPILLWAY_CHUNK_ORDER pages (2 MiB). */
#define SPILLWAY_CHUNK_ORDER 9
#define SPILLWAY_CHUNK_SIZE (1ULL << (12 + SPILLWAY_CHUNK_ORDER))
/* Per-order counters cover orders 0..SPILLWAY_CHUNK_ORDER. */
#define SPILLWAY_NR_ORDERS (SPILLWAY_CHUNK_ORDER + 1)
/* Largest single allocation the module accepts (the pool limit usually bites first). */
#define SPILLWAY_MAX_ALLOC_BYTES (1ULL << 40)

/* spillway_alloc.flags */
/* Allow chunks smaller than 2 MiB (down to 4 KiB) when 2 MiB pages cannot be had. */
#define SPILLWAY_ALLOC_FALLBACK (1U << 0)
#define SPILLWAY_ALLOC_FLAGS_ALL (SPILLWAY_ALLOC_FALLBACK)

/* Memory pressure states (available RAM against the module's thresholds). */
#define SPILLWAY_PRESSURE_NONE 0
#define SPILLWAY_PRESSURE_MODERATE 1
#define SPILLWAY_PRESSURE_CRITICAL 2

/* SPILLWAY_IOC_VERSION: what this module speaks. 40 bytes. */
struct spillway_version {
	__u32 version;          /* out: SPILLWAY_UAPI_VERSION of the module */
	__u32 chunk_order;      /* out: SPILLWAY_CHUNK_ORDER */
	__u64 chunk_size;       /* out: bytes per full chunk */
	__u64 max_alloc_bytes;  /* out: SPILLWAY_MAX_ALLOC_BYTES */
	__u32 debug_ioctls;     /* out: 1 when the module was loaded with debug_ioctls=1 */
	__u32 pad0;             /* in: zero */
	__u64 reserved;         /* in: zero */
};

/* SPILLWAY_IOC_ALLOC: a new DMA-BUF of size bytes; its fd comes back O_RDWR | O_CLOEXEC. 48 bytes. */
struct spillway_alloc {
	__u64 size;         /* in: bytes, a non-zero multiple of SPILLWAY_CHUNK_SIZE */
	__u32 flags;        /* in: SPILLWAY_ALLOC_* */
	__s32 fd;           /* out: the DMA-BUF file descriptor */
	__u64 buffer_id;    /* out: id of the buffer (sysfs pool_info lists it) */
	__u32 nr_chunks;    /* out: physically contiguous chunks backing it */
	__u32 min_order;    /* out: smallest chunk order used (SPILLWAY_CHUNK_ORDER without fallback) */
	__u64 reserved[2];  /* in: zero */
};

/* SPILLWAY_IOC_POOL_INFO: pool totals. Also acknowledges pressure events for poll(). 176 bytes. */
struct spillway_pool_info {
	__u32 flags;                 /* in: zero */
	__u32 pressure;              /* out: SPILLWAY_PRESSURE_* */
	__u64 limit_bytes;           /* out: system-wide pool limit */
	__u64 used_bytes;            /* out: bytes held by live buffers */
	__u64 peak_bytes;            /* out: highest used_bytes since load */
	__u64 buffers;               /* out: live buffers */
	__u64 allocs_total;          /* out: successful allocations since load */
	__u64 frees_total;           /* out: buffers released since load */
	__u64 failed_total;          /* out: allocations refused (limit, rlimit, no memory) */
	__u64 mem_available_bytes;   /* out: MemAvailable at the last pressure check */
	__u64 pressure_events;       /* out: pressure state changes since load */
	__u64 chunks[SPILLWAY_NR_ORDERS]; /* out: live chunks per page order (index = order) */
	__u64 reserved[2];           /* in: zero */
};

/* SPILLWAY_IOC_SET_LIMIT: set the system-wide pool limit (needs CAP_SYS_ADMIN). 32 bytes. */
struct spillway_set_limit {
	__u64 limit_bytes;      /* in: new limit; at most the machine's RAM */
	__u64 old_limit_bytes;  /* out: the limit before */
	__u64 reserved[2];      /* in: zero */
};

/*
 * Debug ioctls: only when the module is loaded with debug_ioctls=1 (otherwise -ENOTTY), and only
 * for CAP_SYS_ADMIN. The test bed uses them to see the buffer the way the kernel does.
 */

/* SPILLWAY_IOC_DEBUG_CHECK: import a spillway DMA-BUF in the kernel and checksum it. 64 bytes. */
struct spillway_debug_check {
	__s32 fd;           /* in: a DMA-BUF fd from SPILLWAY_IOC_ALLOC */
	__u32 flags;        /* in: zero */
	__u64 sg_nents;     /* out: entries of the importer's sg table (map_dma_buf) */
	__u64 sg_bytes;     /* out: sum of their lengths */
	__u64 sg_chunks_ok; /* out: entries that are exactly one of the buffer's chunks, in order */
	__u64 csum_sg;      /* out: spillway_csum of the bytes, read page by page through the sg table */
	__u64 csum_vmap;    /* out: spillway_csum of the bytes, read through dma_buf_vmap */
	__u64 reserved[2];  /* in: zero */
};

/* SPILLWAY_IOC_DEBUG_PIN: pin_user_pages(FOLL_WRITE | FOLL_LONGTERM) as a GPU driver would. 56 bytes. */
struct spillway_debug_pin {
	__u64 addr;         /* in: user address, page aligned */
	__u64 length;       /* in: bytes, page multiple */
	__s32 fd;           /* in: the DMA-BUF mapped at addr (for page identity) */
	__u32 flags;        /* in: zero */
	__s64 pinned;       /* out: pin_user_pages() result (pages or -errno) */
	__u64 matched;      /* out: pinned pages that are the buffer's own pages at that offset */
	__u64 reserved[2];  /* in: zero */
};

#define SPILLWAY_IOC_MAGIC 0xB7
#define SPILLWAY_IOC_VERSION     _IOWR(SPILLWAY_IOC_MAGIC, 0x00, struct spillway_version)
#define SPILLWAY_IOC_ALLOC       _IOWR(SPILLWAY_IOC_MAGIC, 0x01, struct spillway_alloc)
#define SPILLWAY_IOC_POOL_INFO   _IOWR(SPILLWAY_IOC_MAGIC, 0x02, struct spillway_pool_info)
#define SPILLWAY_IOC_SET_LIMIT   _IOWR(SPILLWAY_IOC_MAGIC, 0x03, struct spillway_set_limit)
#define SPILLWAY_IOC_DEBUG_CHECK _IOWR(SPILLWAY_IOC_MAGIC, 0x40, struct spillway_debug_check)
#define SPILLWAY_IOC_DEBUG_PIN   _IOWR(SPILLWAY_IOC_MAGIC, 0x41, struct spillway_debug_pin)

/* FNV-1a over 64-bit little-endian words: the checksum both sides compute. */
#define SPILLWAY_CSUM_INIT 0xcbf29ce484222325ULL
static inline __u64 spillway_csum(__u64 c, const __u64 *words, __u64 nwords)
{
	__u64 i;

	for (i = 0; i < nwords; i++)
		c = (c ^ words[i]) * 0x100000001b3ULL;
	return c;
}

#endif /* _UAPI_SPILLWAY_H */
