// SPDX-License-Identifier: MIT
/*
 * spwtest - the spillway module's tests, run as root inside the qemu guest (static binary).
 *
 * Usage: spwtest <group-id> [test-name]   (the group the module was loaded with, group=<gid>)
 *        spwtest --hold fd|map              (keeps a buffer alive until killed: unload tests)
 *        spwtest --exec-chain <step> <ok>   (a step of memlock-bypass-exec)
 *
 * Each test runs in its own child process (a crash or hang fails that test, not the run) and
 * prints exactly one line "PASS: <name>" or "FAIL: <name>", a failure followed by "  detail: ...".
 * After every test the pool must be back to zero buffers and bytes. The last line is
 * "SPWTEST-RESULT: <failures>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/dma-buf.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/klog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uapi/spillway.h"

#define MIB (1024ULL * 1024ULL)
#define CHUNK SPILLWAY_CHUNK_SIZE
#define NOBODY 65534

static unsigned int g_group;
static int g_ok;
static char g_detail[1024];

/* Record the first failure of the running test; keep going so cleanup still happens. */
#define EXPECT(cond, ...)                                                         \
	do {                                                                      \
		if (!(cond)) {                                                    \
			if (g_ok)                                                 \
				snprintf(g_detail, sizeof(g_detail), __VA_ARGS__); \
			g_ok = 0;                                                 \
		}                                                                 \
	} while (0)
#define REQUIRE(cond, ...)                 \
	do {                               \
		EXPECT(cond, __VA_ARGS__); \
		if (!g_ok)                 \
			goto out;          \
	} while (0)

/* ---------------------------------------------------------------- helpers */

/* Cleanup of a test's resources, each only if it was acquired. */
static void close_if(int fd)
{
	if (fd >= 0)
		close(fd);
}

static void unmap_if(void *p, size_t len)
{
	if (p != MAP_FAILED)
		munmap(p, len);
}

static int dev_open(void)
{
	return open(SPILLWAY_DEVICE_PATH, O_RDWR | O_CLOEXEC);
}

/* ioctl returning 0 or -errno */
static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

static int do_alloc(int dev, uint64_t size, uint32_t flags, struct spillway_alloc *out)
{
	struct spillway_alloc a;
	int ret;

	memset(&a, 0, sizeof(a));
	a.size = size;
	a.flags = flags;
	a.fd = -1;
	ret = xioctl(dev, SPILLWAY_IOC_ALLOC, &a);
	if (out)
		*out = a;
	return ret ? ret : a.fd;
}

static int pool_info(int dev, struct spillway_pool_info *info)
{
	memset(info, 0, sizeof(*info));
	return xioctl(dev, SPILLWAY_IOC_POOL_INFO, info);
}

static int set_limit(int dev, uint64_t limit, uint64_t *old)
{
	struct spillway_set_limit s;
	int ret;

	memset(&s, 0, sizeof(s));
	s.limit_bytes = limit;
	ret = xioctl(dev, SPILLWAY_IOC_SET_LIMIT, &s);
	if (!ret && old)
		*old = s.old_limit_bytes;
	return ret;
}

static int debug_check(int dev, int fd, struct spillway_debug_check *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	return xioctl(dev, SPILLWAY_IOC_DEBUG_CHECK, c);
}

static void fill(void *p, size_t bytes, uint64_t seed)
{
	uint64_t *w = p;

	for (size_t i = 0; i < bytes / 8; i++)
		w[i] = (seed << 32) ^ (i * 0x9E3779B97F4A7C15ULL) ^ (i >> 7);
}

static int check_fill(const void *p, size_t bytes, uint64_t seed)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < bytes / 8; i++)
		if (w[i] != ((seed << 32) ^ (i * 0x9E3779B97F4A7C15ULL) ^ (i >> 7)))
			return 0;
	return 1;
}

static uint64_t csum(const void *p, size_t bytes)
{
	return spillway_csum(SPILLWAY_CSUM_INIT, p, bytes / 8);
}

static int sync_buf(int fd, uint64_t flags)
{
	struct dma_buf_sync s = { .flags = flags };

	return xioctl(fd, DMA_BUF_IOCTL_SYNC, &s);
}

/* Read a whole sysfs file (NUL-terminated) into buf; returns length or -errno. */
static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf + total, size - 1 - total)) > 0)
		total += n;
	close(fd);
	buf[total] = 0;
	return n < 0 ? -errno : (int)total;
}

static long long read_sysfs_num(const char *name)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), SPILLWAY_SYSFS_DIR "/%s", name);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	return strtoll(buf, NULL, 0);
}

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* VmLck of this process in KiB (mm->locked_vm, where RLIMIT_MEMLOCK charges land). */
static long vmlck_kib(void)
{
	char buf[4096], *p;

	if (read_file("/proc/self/status", buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, "VmLck:");
	return p ? strtol(p + 6, NULL, 10) : -1;
}

/* Wait until the pool is empty (releases on exit run before the parent's wait returns; be lenient). */
static int wait_pool_empty(int dev, int ms)
{
	struct spillway_pool_info info;

	for (int i = 0; i <= ms / 10; i++) {
		if (pool_info(dev, &info) == 0 && info.used_bytes == 0 && info.buffers == 0)
			return 1;
		usleep(10000);
	}
	return 0;
}

/* Become an unprivileged user: nobody, optionally in the device's group, no capabilities. */
static int drop_privileges(int with_group)
{
	gid_t g = with_group ? g_group : NOBODY;

	if (setgroups(with_group ? 1 : 0, &g) || setgid(g) || setuid(NOBODY))
		return -errno;
	return getuid() == NOBODY && geteuid() == NOBODY ? 0 : -EPERM;
}

static uint64_t rng_state = 0x853c49e6748fea9bULL;
static uint64_t rnd(void)
{
	/* xorshift64*: reproducible, seeded below */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ---------------------------------------------------------------- tests */

static void t_device_node(void)
{
	struct stat st;
	int dev;

	REQUIRE(stat(SPILLWAY_DEVICE_PATH, &st) == 0, "stat: %s", strerror(errno));
	EXPECT(S_ISCHR(st.st_mode), "not a character device");
	EXPECT((st.st_mode & 07777) == 0660, "mode %o, want 0660", st.st_mode & 07777);
	EXPECT(st.st_uid == 0 && st.st_gid == g_group, "owner %u:%u, want 0:%u", st.st_uid,
	       st.st_gid, g_group);
	EXPECT(!(st.st_mode & 0007), "world-accessible");
	dev = dev_open();
	EXPECT(dev >= 0, "open: %s", strerror(errno));
	close_if(dev);
out:;
}

static void t_version(void)
{
	struct spillway_version v;
	int dev = dev_open();

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	memset(&v, 0, sizeof(v));
	REQUIRE(xioctl(dev, SPILLWAY_IOC_VERSION, &v) == 0, "VERSION: %s", strerror(errno));
	EXPECT(v.version == SPILLWAY_UAPI_VERSION, "version %#x, want %#x", v.version,
	       SPILLWAY_UAPI_VERSION);
	EXPECT(v.chunk_order == SPILLWAY_CHUNK_ORDER && v.chunk_size == CHUNK,
	       "chunk order %u size %llu", v.chunk_order, (unsigned long long)v.chunk_size);
	EXPECT(v.max_alloc_bytes == SPILLWAY_MAX_ALLOC_BYTES, "max_alloc %llu",
	       (unsigned long long)v.max_alloc_bytes);
	EXPECT(v.debug_ioctls == 1, "debug_ioctls %u (testbed loads with debug_ioctls=1)",
	       v.debug_ioctls);
	memset(&v, 0, sizeof(v));
	v.reserved = 1;
	EXPECT(xioctl(dev, SPILLWAY_IOC_VERSION, &v) == -EINVAL, "reserved!=0 accepted");
out:
	close_if(dev);
}

static void t_bad_input(void)
{
	struct spillway_alloc a;
	struct spillway_pool_info info;
	uint64_t bad_sizes[] = { 0, 1, 4096, CHUNK - 1, CHUNK + 4096, 3 * MIB,
				 SPILLWAY_MAX_ALLOC_BYTES + CHUNK, ~0ULL, ~0ULL - CHUNK + 1 };
	unsigned long bad_cmds[] = {
		_IOWR(SPILLWAY_IOC_MAGIC, 0x04, struct spillway_alloc),       /* unknown nr */
		_IOWR(SPILLWAY_IOC_MAGIC, 0x01, struct spillway_version),     /* ALLOC, wrong size */
		_IOR(SPILLWAY_IOC_MAGIC, 0x01, struct spillway_alloc),        /* ALLOC, wrong dir */
		_IOWR(SPILLWAY_IOC_MAGIC + 1, 0x01, struct spillway_alloc),   /* wrong magic */
		_IO(SPILLWAY_IOC_MAGIC, 0x00),
		0,
	};
	int dev = dev_open(), ret;
	unsigned int i;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	for (i = 0; i < sizeof(bad_cmds) / sizeof(bad_cmds[0]); i++) {
		char arg[256] = { 0 };

		ret = xioctl(dev, bad_cmds[i], arg);
		EXPECT(ret == -ENOTTY, "cmd %#lx: %d, want -ENOTTY", bad_cmds[i], ret);
	}
	for (i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		ret = do_alloc(dev, bad_sizes[i], 0, NULL);
		EXPECT(ret == -EINVAL, "size %llu: %d, want -EINVAL",
		       (unsigned long long)bad_sizes[i], ret);
		close_if(ret);
	}
	ret = do_alloc(dev, CHUNK, 1U << 5, NULL);
	EXPECT(ret == -EINVAL, "unknown flag: %d, want -EINVAL", ret);
	memset(&a, 0, sizeof(a));
	a.size = CHUNK;
	a.reserved[1] = 7;
	ret = xioctl(dev, SPILLWAY_IOC_ALLOC, &a);
	EXPECT(ret == -EINVAL, "alloc reserved!=0: %d, want -EINVAL", ret);
	memset(&info, 0, sizeof(info));
	info.flags = 1;
	EXPECT(xioctl(dev, SPILLWAY_IOC_POOL_INFO, &info) == -EINVAL, "pool_info flags accepted");
	EXPECT(xioctl(dev, SPILLWAY_IOC_ALLOC, NULL) == -EFAULT, "NULL arg not -EFAULT");
	EXPECT(xioctl(dev, SPILLWAY_IOC_POOL_INFO, (void *)0xffff800000000000ULL) == -EFAULT,
	       "kernel address not -EFAULT");
	/* a read-only open may query but not allocate */
	close(dev);
	dev = open(SPILLWAY_DEVICE_PATH, O_RDONLY | O_CLOEXEC);
	REQUIRE(dev >= 0, "open O_RDONLY: %s", strerror(errno));
	EXPECT(pool_info(dev, &info) == 0, "POOL_INFO on O_RDONLY failed");
	ret = do_alloc(dev, CHUNK, 0, NULL);
	EXPECT(ret == -EBADF, "ALLOC on O_RDONLY: %d, want -EBADF", ret);
	close_if(ret);
out:
	close_if(dev);
}

static void t_alloc_free_loop(void)
{
	struct spillway_pool_info before, during, after;
	int dev = dev_open(), fds[4] = { -1, -1, -1, -1 };
	uint64_t bytes = 0;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(pool_info(dev, &before) == 0, "POOL_INFO: %s", strerror(errno));
	for (int i = 0; i < 120; i++) {
		int slot = i % 4;
		uint64_t size = (1 + rnd() % 4) * CHUNK;
		struct spillway_alloc a;

		close_if(fds[slot]);
		fds[slot] = do_alloc(dev, size, 0, &a);
		REQUIRE(fds[slot] >= 0, "alloc %llu (iteration %d): %s", (unsigned long long)size,
			i, strerror(-fds[slot]));
		EXPECT(a.nr_chunks == size / CHUNK && a.min_order == SPILLWAY_CHUNK_ORDER,
		       "chunks %u min_order %u for %llu bytes", a.nr_chunks, a.min_order,
		       (unsigned long long)size);
		bytes += size;
	}
	REQUIRE(pool_info(dev, &during) == 0, "POOL_INFO: %s", strerror(errno));
	EXPECT(during.buffers == 4, "buffers %llu, want 4", (unsigned long long)during.buffers);
	EXPECT(during.chunks[SPILLWAY_CHUNK_ORDER] * CHUNK == during.used_bytes,
	       "order-9 chunks %llu do not cover used %llu",
	       (unsigned long long)during.chunks[SPILLWAY_CHUNK_ORDER],
	       (unsigned long long)during.used_bytes);
	EXPECT(read_sysfs_num("pool_used_bytes") == (long long)during.used_bytes,
	       "sysfs pool_used_bytes %lld != %llu", read_sysfs_num("pool_used_bytes"),
	       (unsigned long long)during.used_bytes);
	EXPECT(read_sysfs_num("buffers") == 4, "sysfs buffers %lld", read_sysfs_num("buffers"));
out:
	for (int i = 0; i < 4; i++)
		close_if(fds[i]);
	if (dev < 0)
		return;
	EXPECT(pool_info(dev, &after) == 0 && after.used_bytes == 0 && after.buffers == 0,
	       "pool not empty after close: used %llu buffers %llu",
	       (unsigned long long)after.used_bytes, (unsigned long long)after.buffers);
	for (int o = 0; o < SPILLWAY_NR_ORDERS; o++)
		EXPECT(after.chunks[o] == 0, "order %d: %llu chunks left", o,
		       (unsigned long long)after.chunks[o]);
	EXPECT(after.allocs_total - before.allocs_total == 120 &&
	       after.frees_total - before.frees_total == 120,
	       "allocs %llu frees %llu, want 120 each",
	       (unsigned long long)(after.allocs_total - before.allocs_total),
	       (unsigned long long)(after.frees_total - before.frees_total));
	close(dev);
	(void)bytes;
}

static void t_sysfs(void)
{
	char buf[8192], want[64];
	int dev = dev_open(), fd = -1;
	struct stat st;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(stat(SPILLWAY_SYSFS_DIR "/pool_limit_bytes", &st) == 0, "stat pool_limit_bytes");
	EXPECT((st.st_mode & 0777) == 0644, "pool_limit_bytes mode %o", st.st_mode & 0777);
	fd = do_alloc(dev, 2 * CHUNK, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	REQUIRE(read_file(SPILLWAY_SYSFS_DIR "/pool_info", buf, sizeof(buf)) > 0, "read pool_info");
	snprintf(want, sizeof(want), "tgid=%d ", getpid());
	EXPECT(strstr(buf, want) != NULL, "pool_info has no buffer owned by %s: %s", want, buf);
	EXPECT(strstr(buf, "size=4194304 chunks=2 min_order=9") != NULL, "pool_info line: %s", buf);
	EXPECT(strstr(buf, "used_bytes      4194304") != NULL, "pool_info used: %s", buf);
	EXPECT(read_sysfs_num("pool_used_bytes") == 4194304, "pool_used_bytes %lld",
	       read_sysfs_num("pool_used_bytes"));
	EXPECT(read_sysfs_num("buffers") == 1, "buffers %lld", read_sysfs_num("buffers"));
	EXPECT(read_sysfs_num("pool_limit_bytes") > 0, "pool_limit_bytes");
	REQUIRE(read_file(SPILLWAY_SYSFS_DIR "/pressure", buf, sizeof(buf)) > 0, "read pressure");
	EXPECT(!strcmp(buf, "none\n") || !strcmp(buf, "moderate\n") || !strcmp(buf, "critical\n"),
	       "pressure '%s'", buf);
out:
	close_if(fd);
	close_if(dev);
}

static void t_mmap_sg(void)
{
	const size_t size = 4 * CHUNK;
	struct spillway_debug_check c;
	int dev = dev_open(), fd = -1;
	uint8_t *p = MAP_FAILED, *q = MAP_FAILED;
	uint64_t ucs;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	fd = do_alloc(dev, size, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	EXPECT(mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) == MAP_FAILED &&
	       errno == EINVAL, "MAP_PRIVATE accepted");
	EXPECT(mmap(NULL, size + 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED,
	       "mapping past the end accepted");
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t i = 0; i < size; i += 4096)
		REQUIRE(p[i] == 0 && p[i + 4095] == 0, "new buffer not zeroed at %zu", i);
	EXPECT(sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE) == 0, "SYNC_START");
	fill(p, size, 0xA1);
	EXPECT(sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE) == 0, "SYNC_END");
	ucs = csum(p, size);
	REQUIRE(debug_check(dev, fd, &c) == 0, "DEBUG_CHECK: %s", strerror(errno));
	EXPECT(c.sg_nents == 4 && c.sg_bytes == size && c.sg_chunks_ok == 4,
	       "sg table: nents %llu bytes %llu chunks_ok %llu (want 4 x 2 MiB compound pages)",
	       (unsigned long long)c.sg_nents, (unsigned long long)c.sg_bytes,
	       (unsigned long long)c.sg_chunks_ok);
	EXPECT(c.csum_sg == ucs && c.csum_vmap == ucs,
	       "kernel sees other bytes: user %016llx sg %016llx vmap %016llx",
	       (unsigned long long)ucs, (unsigned long long)c.csum_sg,
	       (unsigned long long)c.csum_vmap);
	/* one flipped byte in the last page must change what the kernel reads */
	p[size - 5] ^= 0x40;
	REQUIRE(debug_check(dev, fd, &c) == 0, "DEBUG_CHECK: %s", strerror(errno));
	EXPECT(c.csum_sg != ucs && c.csum_sg == csum(p, size) && c.csum_vmap == c.csum_sg,
	       "flipped byte not seen by the kernel");
	/* a second mapping at an offset of one chunk sees the same memory */
	q = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, fd, CHUNK);
	REQUIRE(q != MAP_FAILED, "mmap at offset: %s", strerror(errno));
	EXPECT(!memcmp(q, p + CHUNK, CHUNK), "offset mapping shows other bytes");
	q[100] = 0x5a;
	EXPECT(p[CHUNK + 100] == 0x5a, "write through offset mapping not visible");
out:
	unmap_if(q, CHUNK);
	unmap_if(p, size);
	close_if(fd);
	close_if(dev);
}

static int set_param(const char *name, const char *value);

/* Fallback to smaller chunks: only with the flag, exercised with pages above an order "missing". */
static void fallback_case(int dev, unsigned int above, const char *above_s)
{
	struct spillway_pool_info info;
	struct spillway_debug_check c;
	struct spillway_alloc a;
	const size_t size = 3 * CHUNK;
	unsigned int want_chunks = size / (4096u << above);
	uint8_t *p = MAP_FAILED;
	int fd = -1, ret;

	REQUIRE(set_param("debug_fail_above_order", above_s) == 0, "set debug_fail_above_order");
	ret = do_alloc(dev, size, 0, NULL);
	EXPECT(ret == -ENOMEM, "order %u: alloc without FALLBACK gave %d, want -ENOMEM", above, ret);
	close_if(ret);
	fd = do_alloc(dev, size, SPILLWAY_ALLOC_FALLBACK, &a);
	REQUIRE(fd >= 0, "order %u: alloc with FALLBACK: %s", above, strerror(-fd));
	EXPECT(a.min_order == above && a.nr_chunks == want_chunks, "order %u: chunks %u min_order %u",
	       above, a.nr_chunks, a.min_order);
	REQUIRE(pool_info(dev, &info) == 0, "POOL_INFO");
	EXPECT(info.chunks[above] == want_chunks && info.chunks[SPILLWAY_CHUNK_ORDER] == 0,
	       "order %u: per-order count %llu", above, (unsigned long long)info.chunks[above]);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	fill(p, size, 0xF0 + above);
	REQUIRE(debug_check(dev, fd, &c) == 0, "DEBUG_CHECK: %s", strerror(errno));
	EXPECT(c.sg_nents == want_chunks && c.sg_chunks_ok == want_chunks && c.sg_bytes == size,
	       "order %u: sg nents %llu ok %llu", above, (unsigned long long)c.sg_nents,
	       (unsigned long long)c.sg_chunks_ok);
	EXPECT(c.csum_sg == csum(p, size) && c.csum_vmap == c.csum_sg, "order %u: kernel sees other bytes",
	       above);
out:
	unmap_if(p, size);
	close_if(fd);
	set_param("debug_fail_above_order", "9");
}

static void t_fallback_flag(void)
{
	struct spillway_alloc a;
	int dev = dev_open(), fd;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	/* with 2 MiB pages available the flag changes nothing */
	fd = do_alloc(dev, 3 * CHUNK, SPILLWAY_ALLOC_FALLBACK, &a);
	REQUIRE(fd >= 0, "alloc with FALLBACK: %s", strerror(-fd));
	EXPECT(a.min_order == SPILLWAY_CHUNK_ORDER && a.nr_chunks == 3, "chunks %u min_order %u",
	       a.nr_chunks, a.min_order);
	EXPECT(a.buffer_id > 0, "buffer id 0");
	close(fd);
	fallback_case(dev, 4, "4");   /* 64 KiB chunks */
	fallback_case(dev, 0, "0");   /* 4 KiB pages: 1536 chunks, the chunk array grows */
out:
	close_if(dev);
}

static void t_pin_longterm(void)
{
	const size_t size = 4 * CHUNK;
	struct spillway_debug_pin pin;
	int dev = dev_open(), fd = -1;
	void *p = MAP_FAILED;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	fd = do_alloc(dev, size, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	memset(&pin, 0, sizeof(pin));
	pin.addr = (uintptr_t)p;
	pin.length = size;
	pin.fd = fd;
	REQUIRE(xioctl(dev, SPILLWAY_IOC_DEBUG_PIN, &pin) == 0, "DEBUG_PIN: %s", strerror(errno));
	EXPECT(pin.pinned == (int64_t)(size / 4096) && pin.matched == size / 4096,
	       "pin_user_pages(FOLL_LONGTERM) pinned %lld matched %llu of %zu pages",
	       (long long)pin.pinned, (unsigned long long)pin.matched, size / 4096);
out:
	unmap_if(p, size);
	close_if(fd);
	close_if(dev);
}

static void t_o_direct(void)
{
	const size_t size = 4 * CHUNK, len = 4 * MIB;
	struct spillway_debug_check c;
	int dev = dev_open(), fd = -1, bfd = -1;
	uint8_t *p = MAP_FAILED, *io;
	void *anon = NULL;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	fd = do_alloc(dev, size, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	bfd = open("/dev/ram0", O_RDWR | O_DIRECT | O_CLOEXEC);
	REQUIRE(bfd >= 0, "open /dev/ram0 O_DIRECT: %s", strerror(errno));
	REQUIRE(posix_memalign(&anon, 4096, len) == 0, "posix_memalign");
	io = p + CHUNK / 2;   /* spans three chunks */

	fill(anon, len, 0xD1);
	REQUIRE(pwrite(bfd, anon, len, 0) == (ssize_t)len, "pwrite from anon: %s", strerror(errno));
	REQUIRE(pread(bfd, io, len, 0) == (ssize_t)len, "O_DIRECT pread into mapping: %s",
		strerror(errno));
	EXPECT(check_fill(io, len, 0xD1), "O_DIRECT read data differs");
	REQUIRE(debug_check(dev, fd, &c) == 0, "DEBUG_CHECK: %s", strerror(errno));
	EXPECT(c.csum_sg == csum(p, size), "kernel view differs after O_DIRECT read");

	fill(io, len, 0xE2);
	REQUIRE(pwrite(bfd, io, len, len) == (ssize_t)len, "O_DIRECT pwrite from mapping: %s",
		strerror(errno));
	memset(anon, 0, len);
	REQUIRE(pread(bfd, anon, len, len) == (ssize_t)len, "pread back: %s", strerror(errno));
	EXPECT(check_fill(anon, len, 0xE2), "O_DIRECT write data differs");
out:
	free(anon);
	close_if(bfd);
	unmap_if(p, size);
	close_if(fd);
	close_if(dev);
}

/* Another process reads and writes our mapping (remote GUP of the pages). */
static void t_process_vm(void)
{
	const size_t size = 2 * CHUNK;
	struct spillway_debug_check c;
	int dev = dev_open(), fd = -1, status;
	uint8_t *p = MAP_FAILED;
	pid_t parent = getpid(), child;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	fd = do_alloc(dev, size, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	fill(p, size, 0x77);
	child = fork();
	if (child == 0) {
		/* a fresh anonymous buffer: the child must see the parent's pages only through GUP */
		void *buf = malloc(size);
		struct iovec l = { buf, size }, r = { p, size };
		int rc = 0;

		munmap(p, size);
		if (process_vm_readv(parent, &l, 1, &r, 1, 0) != (ssize_t)size || !check_fill(buf, size, 0x77))
			rc |= 1;
		fill(buf, size, 0x88);
		if (process_vm_writev(parent, &l, 1, &r, 1, 0) != (ssize_t)size)
			rc |= 2;
		_exit(rc);
	}
	REQUIRE(child > 0, "fork: %s", strerror(errno));
	REQUIRE(waitpid(child, &status, 0) == child, "waitpid");
	EXPECT(WIFEXITED(status) && !(WEXITSTATUS(status) & 1), "process_vm_readv failed or differs");
	EXPECT(WIFEXITED(status) && !(WEXITSTATUS(status) & 2), "process_vm_writev failed");
	EXPECT(check_fill(p, size, 0x88), "process_vm_writev data not in the mapping");
	REQUIRE(debug_check(dev, fd, &c) == 0, "DEBUG_CHECK: %s", strerror(errno));
	EXPECT(c.csum_sg == csum(p, size), "kernel view differs after process_vm_writev");
out:
	unmap_if(p, size);
	close_if(fd);
	close_if(dev);
}

/* The last reference decides: a mapping keeps the buffer after its fd is closed. */
static void t_lifetime(void)
{
	struct spillway_pool_info info;
	int dev = dev_open(), fd = -1;
	uint8_t *p = MAP_FAILED;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	fd = do_alloc(dev, CHUNK, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	close(fd);
	fd = -1;
	REQUIRE(pool_info(dev, &info) == 0, "POOL_INFO");
	EXPECT(info.buffers == 1 && info.used_bytes == CHUNK, "buffer gone while mapped");
	memset(p, 0xab, CHUNK);
	EXPECT(p[CHUNK - 1] == 0xab, "mapping unusable after close");
	munmap(p, CHUNK);
	p = MAP_FAILED;
	EXPECT(wait_pool_empty(dev, 2000), "pool not empty after munmap");
out:
	unmap_if(p, CHUNK);
	close_if(fd);
	close_if(dev);
}

static void t_limit(void)
{
	struct spillway_pool_info before, info;
	uint64_t old = 0, tmp;
	int dev = dev_open(), fds[5] = { -1, -1, -1, -1, -1 }, ret;
	char num[32];

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(pool_info(dev, &before) == 0, "POOL_INFO");
	REQUIRE(set_limit(dev, 4 * CHUNK, &old) == 0, "SET_LIMIT: %s", strerror(errno));
	EXPECT(old == before.limit_bytes, "old limit %llu, want %llu", (unsigned long long)old,
	       (unsigned long long)before.limit_bytes);
	for (int i = 0; i < 4; i++) {
		fds[i] = do_alloc(dev, CHUNK, 0, NULL);
		EXPECT(fds[i] >= 0, "alloc %d under the limit: %s", i, strerror(-fds[i]));
	}
	ret = do_alloc(dev, CHUNK, 0, NULL);
	EXPECT(ret == -ENOMEM, "alloc over the limit: %d, want -ENOMEM", ret);
	close_if(ret);
	EXPECT(pool_info(dev, &info) == 0 && info.used_bytes == 4 * CHUNK &&
	       info.failed_total == before.failed_total + 1, "used %llu failed %llu",
	       (unsigned long long)info.used_bytes, (unsigned long long)info.failed_total);
	close(fds[0]);
	fds[0] = do_alloc(dev, CHUNK, 0, NULL);
	EXPECT(fds[0] >= 0, "alloc after a free: %s", strerror(-fds[0]));
	/* through sysfs (root): lower below use, existing buffers stay */
	snprintf(num, sizeof(num), "%llu", (unsigned long long)CHUNK);
	EXPECT(write_file(SPILLWAY_SYSFS_DIR "/pool_limit_bytes", num) == 0, "sysfs write");
	EXPECT(read_sysfs_num("pool_limit_bytes") == (long long)CHUNK, "sysfs limit not applied");
	EXPECT(pool_info(dev, &info) == 0 && info.limit_bytes == CHUNK && info.buffers == 4,
	       "limit %llu buffers %llu", (unsigned long long)info.limit_bytes,
	       (unsigned long long)info.buffers);
	for (int i = 0; i < 4; i++) {
		close(fds[i]);
		fds[i] = -1;
	}
	ret = do_alloc(dev, 2 * CHUNK, 0, NULL);
	EXPECT(ret == -ENOMEM, "single alloc above limit: %d", ret);
	close_if(ret);
	EXPECT(write_file(SPILLWAY_SYSFS_DIR "/pool_limit_bytes", "banana") == -EINVAL,
	       "sysfs accepted 'banana'");
	EXPECT(set_limit(dev, 1ULL << 62, &tmp) == -EINVAL, "limit above RAM accepted");
	{
		struct spillway_set_limit s = { .limit_bytes = CHUNK, .reserved = { 0, 1 } };

		EXPECT(xioctl(dev, SPILLWAY_IOC_SET_LIMIT, &s) == -EINVAL, "reserved!=0 accepted");
	}
out:
	for (int i = 0; i < 5; i++)
		close_if(fds[i]);
	if (dev >= 0) {
		if (old)
			EXPECT(set_limit(dev, old, NULL) == 0, "restoring the limit failed");
		close(dev);
	}
}

/* As nobody: device group access, privilege checks, RLIMIT_MEMLOCK charged to our mm. */
static int unprivileged_child(char *detail, size_t dlen)
{
	struct rlimit rl = { 3 * CHUNK, 3 * CHUNK };
	struct spillway_pool_info info;
	struct spillway_debug_check c;
	int dev, a, b, ret;
	long lck0, lck1;

#define CHILD_FAIL(...) do { snprintf(detail, dlen, __VA_ARGS__); return 1; } while (0)
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		CHILD_FAIL("setrlimit: %s", strerror(errno));
	if ((ret = drop_privileges(1)))
		CHILD_FAIL("drop privileges: %s", strerror(-ret));
	dev = dev_open();
	if (dev < 0)
		CHILD_FAIL("open as nobody in group %u: %s", g_group, strerror(errno));
	if (pool_info(dev, &info))
		CHILD_FAIL("POOL_INFO as nobody: %s", strerror(errno));
	if ((ret = set_limit(dev, 1ULL << 30, NULL)) != -EPERM)
		CHILD_FAIL("SET_LIMIT as nobody: %d, want -EPERM", ret);
	if ((ret = debug_check(dev, 0, &c)) != -EPERM)
		CHILD_FAIL("DEBUG_CHECK as nobody: %d, want -EPERM", ret);
	if ((ret = write_file(SPILLWAY_SYSFS_DIR "/pool_limit_bytes", "0")) != -EACCES)
		CHILD_FAIL("sysfs pool_limit_bytes write as nobody: %d, want -EACCES", ret);
	lck0 = vmlck_kib();
	a = do_alloc(dev, 2 * CHUNK, 0, NULL);
	if (a < 0)
		CHILD_FAIL("alloc 4 MiB under a 6 MiB RLIMIT_MEMLOCK: %s", strerror(-a));
	lck1 = vmlck_kib();
	if (lck1 - lck0 != 4096)
		CHILD_FAIL("VmLck %ld -> %ld kB, want +4096", lck0, lck1);
	b = do_alloc(dev, 2 * CHUNK, 0, NULL);
	if (b != -ENOMEM)
		CHILD_FAIL("alloc past RLIMIT_MEMLOCK: %d, want -ENOMEM", b);
	if (pool_info(dev, &info) || info.used_bytes + 2 * CHUNK > info.limit_bytes)
		CHILD_FAIL("pool limit, not RLIMIT_MEMLOCK, refused it");
	close(a);
	if (vmlck_kib() != lck0)
		CHILD_FAIL("VmLck %ld kB after close, want %ld", vmlck_kib(), lck0);
	b = do_alloc(dev, 3 * CHUNK, 0, NULL);
	if (b < 0)
		CHILD_FAIL("alloc up to RLIMIT_MEMLOCK after close: %s", strerror(-b));
	close(b);
	close(dev);
	return 0;
}

static int run_in_child(int (*fn)(char *, size_t), char *detail, size_t dlen)
{
	int pfd[2], status;
	pid_t pid;
	ssize_t n;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		char d[512] = "";
		int rc = fn(d, sizeof(d));

		if (write(pfd[1], d, strlen(d)) < 0)
			rc = 2;
		_exit(rc);
	}
	close(pfd[1]);
	n = read(pfd[0], detail, dlen - 1);
	detail[n > 0 ? n : 0] = 0;
	close(pfd[0]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void t_unprivileged(void)
{
	char d[512];
	int rc = run_in_child(unprivileged_child, d, sizeof(d));

	EXPECT(rc == 0, "%s (rc %d)", d, rc);
}

static int outsider_child(char *detail, size_t dlen)
{
	int ret = drop_privileges(0), dev;

	if (ret)
		CHILD_FAIL("drop privileges: %s", strerror(-ret));
	dev = dev_open();
	if (dev >= 0 || errno != EACCES)
		CHILD_FAIL("open by nobody outside group %u: %s, want EACCES", g_group,
			   dev >= 0 ? "success" : strerror(errno));
	return 0;
}

static void t_not_world_accessible(void)
{
	char d[512];
	int rc = run_in_child(outsider_child, d, sizeof(d));

	EXPECT(rc == 0, "%s (rc %d)", d, rc);
}

/* A process with live buffers (fds, a mapping, RLIMIT charges) is SIGKILLed: every page returns. */
static void t_kill(void)
{
	struct spillway_pool_info info;
	int dev = dev_open(), pfd[2] = { -1, -1 }, status;
	char buf[8192], want[64], c = 0;
	pid_t child = -1;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(pipe(pfd) == 0, "pipe");
	child = fork();
	if (child == 0) {
		struct rlimit rl = { 64 * MIB, 64 * MIB };
		int fds[3];
		void *m;

		close(pfd[0]);
		/* unprivileged, so its mm carries RLIMIT_MEMLOCK charges that must be undone */
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || drop_privileges(1))
			_exit(1);
		for (int i = 0; i < 3; i++)
			if ((fds[i] = do_alloc(dev, 2 * CHUNK, 0, NULL)) < 0)
				_exit(2);
		m = mmap(NULL, 2 * CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
		if (m == MAP_FAILED)
			_exit(3);
		memset(m, 1, 2 * CHUNK);
		close(fds[1]);   /* this one lives on through the mapping only */
		if (write(pfd[1], "r", 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	REQUIRE(child > 0, "fork");
	close(pfd[1]);
	pfd[1] = -1;
	REQUIRE(read(pfd[0], &c, 1) == 1 && c == 'r', "child did not get ready");
	REQUIRE(pool_info(dev, &info) == 0, "POOL_INFO");
	EXPECT(info.buffers == 3 && info.used_bytes == 6 * CHUNK, "before kill: buffers %llu used %llu",
	       (unsigned long long)info.buffers, (unsigned long long)info.used_bytes);
	REQUIRE(read_file(SPILLWAY_SYSFS_DIR "/pool_info", buf, sizeof(buf)) > 0, "pool_info");
	snprintf(want, sizeof(want), "tgid=%d ", child);
	EXPECT(strstr(buf, want) != NULL, "pool_info does not name owner %s", want);
	EXPECT(strstr(buf, "locked_pages=1024") != NULL, "RLIMIT_MEMLOCK charge not shown");
	kill(child, SIGKILL);
	REQUIRE(waitpid(child, &status, 0) == child, "waitpid");
	child = -1;
	EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
	EXPECT(wait_pool_empty(dev, 3000), "pool not empty after SIGKILL");
	EXPECT(pool_info(dev, &info) == 0 && info.chunks[SPILLWAY_CHUNK_ORDER] == 0,
	       "chunks left after SIGKILL");
out:
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	close_if(pfd[0]);
	close_if(pfd[1]);
	close_if(dev);
}

static int set_param(const char *name, const char *value)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/spillway/parameters/%s", name);
	return write_file(path, value);
}

/* Wait up to ms for POLLPRI on fd; returns revents. */
static int poll_pri(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLPRI };

	return poll(&p, 1, ms) > 0 ? p.revents : 0;
}

static void t_pressure_poll(void)
{
	struct spillway_pool_info info;
	char buf[64];
	int dev = dev_open(), sfd = -1, r;
	uint64_t events0;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(pool_info(dev, &info) == 0, "POOL_INFO");
	REQUIRE(info.pressure == SPILLWAY_PRESSURE_NONE, "pressure %u at start (available %llu)",
		info.pressure, (unsigned long long)info.mem_available_bytes);
	EXPECT(info.mem_available_bytes > 0, "no MemAvailable sample yet");
	events0 = info.pressure_events;
	EXPECT(poll_pri(dev, 300) == 0, "POLLPRI without a state change");
	/* sysfs: read once, then poll for sysfs_notify */
	sfd = open(SPILLWAY_SYSFS_DIR "/pressure", O_RDONLY | O_CLOEXEC);
	REQUIRE(sfd >= 0, "open sysfs pressure");
	EXPECT(read(sfd, buf, sizeof(buf)) > 0, "read sysfs pressure");

	/* a threshold above all RAM: moderate */
	REQUIRE(set_param("pressure_moderate_mb", "1000000") == 0, "set pressure_moderate_mb");
	r = poll_pri(dev, 5000);
	EXPECT(r & POLLPRI, "no POLLPRI on /dev/spillway after raising the moderate threshold");
	EXPECT(poll_pri(sfd, 1000) & POLLPRI, "no sysfs_notify on pressure");
	REQUIRE(pool_info(dev, &info) == 0, "POOL_INFO");
	EXPECT(info.pressure == SPILLWAY_PRESSURE_MODERATE && info.pressure_events == events0 + 1,
	       "state %u events %llu", info.pressure, (unsigned long long)info.pressure_events);
	EXPECT(read_file(SPILLWAY_SYSFS_DIR "/pressure", buf, sizeof(buf)) > 0 &&
	       !strcmp(buf, "moderate\n"), "sysfs pressure '%s'", buf);
	EXPECT(poll_pri(dev, 0) == 0, "POLLPRI still set after POOL_INFO acknowledged it");

	REQUIRE(set_param("pressure_critical_mb", "1000000") == 0, "set pressure_critical_mb");
	EXPECT(poll_pri(dev, 5000) & POLLPRI, "no POLLPRI for critical");
	EXPECT(pool_info(dev, &info) == 0 && info.pressure == SPILLWAY_PRESSURE_CRITICAL,
	       "state %u, want critical", info.pressure);

	/* back to the defaults: none (moderate first, so critical -> none is one change) */
	set_param("pressure_moderate_mb", "0");
	set_param("pressure_critical_mb", "0");
	EXPECT(poll_pri(dev, 5000) & POLLPRI, "no POLLPRI on relief");
	EXPECT(pool_info(dev, &info) == 0 && info.pressure == SPILLWAY_PRESSURE_NONE,
	       "state %u, want none", info.pressure);
out:
	set_param("pressure_moderate_mb", "0");
	set_param("pressure_critical_mb", "0");
	close_if(sfd);
	close_if(dev);
}

/* ---------------------------------------------------------------- hardening (issue 18) */

/* Number of open descriptors of this process (/proc/self/fd, less the one reading it). */
static int count_fds(void)
{
	char buf[16384];
	int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	long got;

	if (fd < 0)
		return -1;
	while ((got = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0)
		for (long off = 0; off < got;) {
			struct linux_dirent64 {
				uint64_t d_ino;
				int64_t d_off;
				unsigned short d_reclen;
				unsigned char d_type;
				char d_name[];
			} *d = (void *)(buf + off);

			if (d->d_name[0] != '.')
				n++;
			off += d->d_reclen;
		}
	close(fd);
	return n - 1;
}

/* Send one int (an fd when ok, else -errno) over a Unix socket; fds travel as SCM_RIGHTS. */
static int send_result(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &fd, sizeof(fd) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &m, 0) == sizeof(fd) ? 0 : -errno;
}

/* Receive what send_result sent: the received fd, or the sender's -errno. */
static int recv_result(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	int val = -EIO, fd = -1;
	struct iovec iov = { &val, sizeof(val) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != sizeof(val))
		return -EIO;
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return val >= 0 ? fd : val;
}

/*
 * The bypass of issue 18: children allocate, pass the DMA-BUF fd to the parent over a Unix
 * socket and exit, so each child's mm (where the old charge lived) is gone. As nobody with a
 * 6 MiB RLIMIT_MEMLOCK, the user may hold 3 chunks in all, however many processes it uses.
 */
static int fork_passfd_child(char *detail, size_t dlen)
{
	struct rlimit rl = { 3 * CHUNK, 3 * CHUNK };
	int sv[2], fds[8], ok = 0, enomem = 0, ret;

	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		CHILD_FAIL("setrlimit: %s", strerror(errno));
	if ((ret = drop_privileges(1)))
		CHILD_FAIL("drop privileges: %s", strerror(-ret));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		CHILD_FAIL("socketpair: %s", strerror(errno));
	for (int i = 0; i < 8; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			int dev = dev_open(), fd;

			fd = dev < 0 ? -errno : do_alloc(dev, CHUNK, 0, NULL);
			_exit(send_result(sv[1], fd) ? 1 : 0);
		}
		if (pid < 0)
			CHILD_FAIL("fork: %s", strerror(errno));
		fds[i] = recv_result(sv[0]);
		waitpid(pid, NULL, 0);
		if (fds[i] >= 0)
			ok++;
		else if (fds[i] == -ENOMEM)
			enomem++;
		else
			CHILD_FAIL("child %d: %s", i, strerror(-fds[i]));
	}
	if (ok != 3 || enomem != 5)
		CHILD_FAIL("8 children of one user under a 6 MiB RLIMIT_MEMLOCK pinned %d x 2 MiB "
			   "(%d ENOMEM), want 3 and then ENOMEM", ok, enomem);
	/* closing the passed fds returns the user's charge: a new child may allocate again */
	for (int i = 0; i < 8; i++)
		close_if(fds[i]);
	{
		pid_t pid = fork();
		int fd;

		if (pid == 0) {
			int dev = dev_open();

			_exit(send_result(sv[1], dev < 0 ? -errno : do_alloc(dev, 3 * CHUNK, 0, NULL)) ? 1 : 0);
		}
		fd = recv_result(sv[0]);
		waitpid(pid, NULL, 0);
		if (fd < 0)
			CHILD_FAIL("after closing every fd the user's charge was not returned: %s",
				   strerror(-fd));
		close(fd);
	}
	close(sv[0]);
	close(sv[1]);
	return 0;
}

static void t_memlock_fork_passfd(void)
{
	char d[512];
	int rc = run_in_child(fork_passfd_child, d, sizeof(d));

	EXPECT(rc == 0, "%s (rc %d)", d, rc);
}

/*
 * The exec variant: a process allocates, keeps the fd across exec (a new mm starts at
 * locked_vm 0) and allocates again, 6 times. Each step is `spwtest --exec-chain <step> <ok>`; the
 * last exits with the number of allocations that succeeded.
 */
static int exec_chain(int step, int ok)
{
	char s[16], o[16];
	int dev = dev_open(), fd;

	if (dev < 0)
		return 90;
	fd = do_alloc(dev, CHUNK, 0, NULL);
	close(dev);
	if (fd >= 0) {
		ok++;
		fcntl(fd, F_SETFD, 0);   /* kept across exec */
	} else if (fd != -ENOMEM) {
		return 91;
	}
	if (step >= 5)
		return ok;
	snprintf(s, sizeof(s), "%d", step + 1);
	snprintf(o, sizeof(o), "%d", ok);
	execl("/proc/self/exe", "spwtest", "--exec-chain", s, o, (char *)NULL);
	return 92;
}

static void t_memlock_exec(void)
{
	struct rlimit rl = { 3 * CHUNK, 3 * CHUNK };
	int status = -1;
	pid_t pid = fork();

	if (pid == 0) {
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || drop_privileges(1))
			_exit(93);
		execl("/proc/self/exe", "spwtest", "--exec-chain", "0", "0", (char *)NULL);
		_exit(92);
	}
	REQUIRE(pid > 0, "fork: %s", strerror(errno));
	REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
	REQUIRE(WIFEXITED(status), "exec chain died: status %#x", status);
	EXPECT(WEXITSTATUS(status) == 3,
	       "6 execs of one process under a 6 MiB RLIMIT_MEMLOCK pinned %d x 2 MiB, want 3 "
	       "(90+: setup error)", WEXITSTATUS(status));
out:;
}

static int write_str(const char *path, const char *value)
{
	return write_file(path, value);
}

/*
 * A process in a memory cgroup with memory.max = 16 MiB cannot pin beyond it: the pages are
 * charged to the cgroup (__GFP_ACCOUNT) and an allocation over the limit fails with ENOMEM.
 */
static void t_memcg(void)
{
	const char *cg = "/sys/fs/cgroup/spwtest";
	int pfd[2] = { -1, -1 }, status;
	long long res[3] = { -1, -1, -1 };
	pid_t pid = -1;

	REQUIRE(access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0, "cgroup2 not mounted at /sys/fs/cgroup");
	write_str("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	REQUIRE(mkdir(cg, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", cg, strerror(errno));
	REQUIRE(write_str("/sys/fs/cgroup/spwtest/memory.max", "16777216") == 0, "memory.max: %s",
		strerror(errno));
	REQUIRE(pipe(pfd) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		char self[32], buf[64];
		int dev, fds[32], n = 0, err = 0;
		long long cur0 = -1, cur1 = -1;

		snprintf(self, sizeof(self), "%d", getpid());
		if (write_str("/sys/fs/cgroup/spwtest/cgroup.procs", self))
			_exit(1);
		dev = dev_open();
		if (read_file("/sys/fs/cgroup/spwtest/memory.current", buf, sizeof(buf)) > 0)
			cur0 = strtoll(buf, NULL, 10);
		for (n = 0; n < 32; n++) {
			fds[n] = do_alloc(dev, CHUNK, 0, NULL);
			if (fds[n] < 0) {
				err = -fds[n];
				break;
			}
		}
		if (read_file("/sys/fs/cgroup/spwtest/memory.current", buf, sizeof(buf)) > 0)
			cur1 = strtoll(buf, NULL, 10);
		{
			long long out[3] = { n * (long long)CHUNK, cur1 - cur0, err };

			if (write(pfd[1], out, sizeof(out)) != sizeof(out))
				_exit(2);
		}
		_exit(0);
	}
	REQUIRE(pid > 0, "fork");
	close(pfd[1]);
	pfd[1] = -1;
	EXPECT(read(pfd[0], res, sizeof(res)) == sizeof(res), "child did not report");
	waitpid(pid, &status, 0);
	pid = -1;
	printf("INFO: memcg memory.max 16 MiB: pinned %lld MiB, memory.current +%lld KiB, then %s\n",
	       res[0] >> 20, res[1] >> 10, res[2] > 0 ? strerror((int)res[2]) : "no error");
	EXPECT(res[0] >= 0 && res[0] <= 16 * (long long)MIB && res[2] == ENOMEM,
	       "in a 16 MiB memory cgroup pinned %lld MiB (last error %lld), want at most 16 and ENOMEM",
	       res[0] >> 20, res[2]);
	EXPECT(res[0] > 0 && res[1] >= res[0], "memory.current grew by %lld bytes for %lld bytes pinned: "
	       "the pages are not charged to the cgroup", res[1], res[0]);
out:
	if (pid > 0)
		waitpid(pid, NULL, 0);
	close_if(pfd[0]);
	close_if(pfd[1]);
	/* the child exited and its buffers with it; the cgroup is empty */
	for (int i = 0; i < 50 && rmdir(cg) && errno == EBUSY; i++)
		usleep(20000);
}

/* user_quota_bytes: one user's processes together hold at most the quota; other users are apart. */
static int quota_child(char *detail, size_t dlen)
{
	struct rlimit rl = { 64 * MIB, 64 * MIB };
	int dev, fds[6], ok = 0, ret, sv[2];
	pid_t pid;

	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		CHILD_FAIL("setrlimit: %s", strerror(errno));
	if ((ret = drop_privileges(1)))
		CHILD_FAIL("drop privileges: %s", strerror(-ret));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		CHILD_FAIL("socketpair");
	dev = dev_open();
	for (int i = 0; i < 3; i++)
		if ((fds[i] = do_alloc(dev, CHUNK, 0, NULL)) >= 0)
			ok++;
	/* a second process of the same user gets only what is left of the quota */
	pid = fork();
	if (pid == 0) {
		int a = do_alloc(dev, CHUNK, 0, NULL), b = do_alloc(dev, CHUNK, 0, NULL);

		send_result(sv[1], a);
		send_result(sv[1], b);
		_exit(0);
	}
	fds[3] = recv_result(sv[0]);
	fds[4] = recv_result(sv[0]);
	waitpid(pid, NULL, 0);
	if (ok != 3 || fds[3] < 0 || fds[4] != -ENOMEM)
		CHILD_FAIL("quota 8 MiB: parent got %d of 3 chunks, child %d then %d (want fd, -ENOMEM)",
			   ok, fds[3], fds[4]);
	for (int i = 0; i < 4; i++)
		close_if(fds[i]);
	fds[0] = do_alloc(dev, 4 * CHUNK, 0, NULL);
	if (fds[0] < 0)
		CHILD_FAIL("the whole quota after closing everything: %s", strerror(-fds[0]));
	close(fds[0]);
	close(dev);
	return 0;
}

static void t_user_quota(void)
{
	char d[512], q[32];
	int dev = dev_open(), fd = -1, rc;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	snprintf(q, sizeof(q), "%llu", 4 * CHUNK);
	REQUIRE(set_param("user_quota_bytes", q) == 0, "set user_quota_bytes: %s", strerror(errno));
	/* root holds some of its own quota meanwhile: quotas are per uid */
	fd = do_alloc(dev, 3 * CHUNK, 0, NULL);
	REQUIRE(fd >= 0, "root alloc under its quota: %s", strerror(-fd));
	rc = run_in_child(quota_child, d, sizeof(d));
	EXPECT(rc == 0, "%s (rc %d)", d, rc);
	rc = do_alloc(dev, 2 * CHUNK, 0, NULL);
	EXPECT(rc == -ENOMEM, "root over its quota: %d, want -ENOMEM", rc);
	close_if(rc);
out:
	set_param("user_quota_bytes", "0");
	close_if(fd);
	close_if(dev);
}

/* pool_info names other users' processes: 0440 root:<group>, and the command name escaped. */
static int pool_info_reader(char *detail, size_t dlen, int in_group)
{
	char buf[8192];
	int ret = drop_privileges(in_group);

	if (ret)
		CHILD_FAIL("drop privileges: %s", strerror(-ret));
	ret = read_file(SPILLWAY_SYSFS_DIR "/pool_info", buf, sizeof(buf));
	if (in_group && ret <= 0)
		CHILD_FAIL("pool_info unreadable by the device group: %s", strerror(-ret));
	if (!in_group && ret != -EACCES)
		CHILD_FAIL("pool_info read by nobody outside the group: %d, want -EACCES", ret);
	return 0;
}
static int reader_in_group(char *d, size_t n) { return pool_info_reader(d, n, 1); }
static int reader_outside(char *d, size_t n) { return pool_info_reader(d, n, 0); }

static void t_pool_info_restricted(void)
{
	static const char evil[] = "\x1b[2Jx y=1\n\\\xff";
	char buf[8192], d[512];
	struct stat st;
	int dev = dev_open(), fd = -1, rc;
	pid_t pid = -1;
	int pfd[2] = { -1, -1 };

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(stat(SPILLWAY_SYSFS_DIR "/pool_info", &st) == 0, "stat pool_info");
	EXPECT((st.st_mode & 0777) == 0440 && st.st_uid == 0 && st.st_gid == g_group,
	       "pool_info mode %o owner %u:%u, want 0440 0:%u", st.st_mode & 0777, st.st_uid,
	       st.st_gid, g_group);
	rc = run_in_child(reader_outside, d, sizeof(d));
	EXPECT(rc == 0, "%s", d);
	rc = run_in_child(reader_in_group, d, sizeof(d));
	EXPECT(rc == 0, "%s", d);
	/* a process whose command name carries a terminal escape, a newline and field syntax */
	REQUIRE(pipe(pfd) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_NAME, evil);
		fd = do_alloc(dev, CHUNK, 0, NULL);
		if (write(pfd[1], "r", 1) != 1 || fd < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	REQUIRE(pid > 0, "fork");
	REQUIRE(read(pfd[0], d, 1) == 1, "child not ready");
	REQUIRE(read_file(SPILLWAY_SYSFS_DIR "/pool_info", buf, sizeof(buf)) > 0, "read pool_info");
	for (const char *p = buf; *p; p++)
		if ((*p < 0x20 && *p != '\n') || (unsigned char)*p >= 0x7f) {
			EXPECT(0, "pool_info has raw byte %#x at %zu: %s", (unsigned char)*p,
			       (size_t)(p - buf), buf);
			break;
		}
	EXPECT(strstr(buf, "comm=\\033[2Jx\\040y\\0751\\012\\134\\377 ") != NULL,
	       "command name not escaped as octal: %s", buf);
out:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	close_if(pfd[0]);
	close_if(pfd[1]);
	close_if(dev);
}

/* Physical frame of each page of a mapping (root reads PFNs from /proc/self/pagemap). */
static void pfns(const void *p, size_t bytes, uint64_t *out)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	size_t n = bytes / 4096;

	memset(out, 0, n * sizeof(*out));
	if (fd < 0)
		return;
	if (pread(fd, out, n * 8, (uintptr_t)p / 4096 * 8) != (ssize_t)(n * 8))
		memset(out, 0, n * sizeof(*out));
	for (size_t i = 0; i < n; i++)
		out[i] &= (1ULL << 55) - 1;
	close(fd);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Zeroing where it matters: pages that held another buffer's bytes come back zeroed. Allocate,
 * fill, free, allocate again: the new buffer reuses freed pages (checked by PFN) and reads zero.
 */
static void t_zeroing_reuse(void)
{
	const size_t size = 16 * CHUNK, n = size / 4096;
	static uint64_t first[16 * CHUNK / 4096], second[16 * CHUNK / 4096];
	int dev = dev_open(), fd = -1;
	uint8_t *p = MAP_FAILED;
	size_t reused = 0, nonzero = 0;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	fd = do_alloc(dev, size, 0, NULL);
	REQUIRE(fd >= 0, "alloc: %s", strerror(-fd));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	memset(p, 0xA5, size);
	pfns(p, size, first);
	munmap(p, size);
	close(fd);
	REQUIRE(wait_pool_empty(dev, 2000), "first buffer not freed");
	fd = do_alloc(dev, size, 0, NULL);
	REQUIRE(fd >= 0, "realloc: %s", strerror(-fd));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(p != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t i = 0; i < size; i += 8)
		if (*(uint64_t *)(p + i))
			nonzero++;
	pfns(p, size, second);
	qsort(first, n, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < n; i++)
		if (second[i] && bsearch(&second[i], first, n, sizeof(uint64_t), cmp_u64))
			reused++;
	printf("INFO: zeroing: %zu of %zu pages of the new buffer held the freed buffer's bytes\n",
	       reused, n);
	EXPECT(nonzero == 0, "%zu non-zero words in a reallocated buffer", nonzero);
	EXPECT(reused > 0, "no page of the freed buffer was reused: the check proves nothing");
out:
	unmap_if(p, size);
	close_if(fd);
	close_if(dev);
}

/*
 * ALLOC whose result cannot be copied out (the argument is in a read-only page): -EFAULT, and no
 * descriptor installed, no buffer left.
 */
static void t_copyout_efault(void)
{
	struct spillway_alloc *a = MAP_FAILED;
	struct spillway_pool_info info;
	int dev = dev_open(), before, after;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(a != MAP_FAILED, "mmap");
	a->size = CHUNK;
	REQUIRE(mprotect(a, 4096, PROT_READ) == 0, "mprotect");
	before = count_fds();
	for (int i = 0; i < 50; i++)
		EXPECT(xioctl(dev, SPILLWAY_IOC_ALLOC, a) == -EFAULT, "ALLOC into a read-only page not -EFAULT");
	after = count_fds();
	EXPECT(before > 0 && after == before, "open fds %d -> %d after 50 failed copy-outs", before, after);
	EXPECT(wait_pool_empty(dev, 2000), "buffers left after failed copy-outs");
	EXPECT(pool_info(dev, &info) == 0 && info.allocs_total == info.frees_total,
	       "allocs %llu frees %llu", (unsigned long long)info.allocs_total,
	       (unsigned long long)info.frees_total);
out:
	unmap_if(a, 4096);
	close_if(dev);
}

/* The kernel log has no warning, BUG, KASAN report or oops (klogctl: root). */
static int kernel_log_clean(char *first_bad, size_t len)
{
	static char log[1 << 20];
	static const char *const bad[] = { "WARNING:", "BUG:", "KASAN", "Oops", "Call Trace",
					   "general protection", "spillway: leak" };
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof(log) - 1);

	if (n < 0) {
		snprintf(first_bad, len, "klogctl: %s", strerror(errno));
		return 0;
	}
	log[n] = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *p = strstr(log, bad[i]);

		if (p) {
			snprintf(first_bad, len, "%.200s", p);
			return 0;
		}
	}
	return 1;
}

/* hold mode for the unload tests in init.sh: keep a buffer alive by fd or by mapping only */
static int hold_buffer(const char *how)
{
	int dev = dev_open(), fd;
	void *p;

	if (dev < 0)
		return 1;
	fd = do_alloc(dev, CHUNK, 0, NULL);
	close(dev);   /* only the buffer keeps the module busy */
	if (fd < 0)
		return 2;
	if (!strcmp(how, "map")) {
		p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return 3;
		memset(p, 0x3c, CHUNK);
		close(fd);
	}
	printf("HOLDING %s\n", how);
	fflush(stdout);
	/* until killed */
	for (;;)
		pause();
}

/*
 * 20,000 random ioctls: valid and invalid commands, sizes, flags, pointers, fds; ALLOCs whose
 * result cannot be copied out (read-only argument). Afterwards: no descriptor leaked (counted in
 * /proc/self/fd), the pool back at 0, and the kernel log clean. seed 0: from the clock.
 */
static void fuzz_run(uint64_t seed)
{
	static const unsigned long cmds[] = {
		SPILLWAY_IOC_VERSION, SPILLWAY_IOC_ALLOC, SPILLWAY_IOC_POOL_INFO,
		SPILLWAY_IOC_SET_LIMIT, SPILLWAY_IOC_DEBUG_CHECK, SPILLWAY_IOC_DEBUG_PIN,
	};
	static const uint64_t sizes[] = { 0, 1, 4096, CHUNK - 1, CHUNK, 2 * CHUNK, 3 * CHUNK,
					  CHUNK + 4096, SPILLWAY_MAX_ALLOC_BYTES,
					  SPILLWAY_MAX_ALLOC_BYTES + CHUNK, ~0ULL, 1ULL << 63 };
	struct spillway_pool_info info;
	int dev = dev_open(), live[4] = { -1, -1, -1, -1 }, nfds = 0, counts[4] = { 0 };
	uint64_t old_limit = 0;
	void *map = MAP_FAILED;
	struct spillway_alloc *ro = MAP_FAILED;
	int mapfd = -1, fds0, fds1, copyout_faults = 0, sync_files = 0;
	char bad[256];
	union {
		uint8_t bytes[512];
		uint64_t words[64];
	} arg;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(set_limit(dev, 16 * MIB, &old_limit) == 0, "SET_LIMIT");
	mapfd = do_alloc(dev, 2 * CHUNK, 0, NULL);
	REQUIRE(mapfd >= 0, "alloc: %s", strerror(-mapfd));
	map = mmap(NULL, 2 * CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, mapfd, 0);
	REQUIRE(map != MAP_FAILED, "mmap");
	ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(ro != MAP_FAILED, "mmap");
	ro->size = CHUNK;   /* a valid request the module cannot answer into */
	REQUIRE(mprotect(ro, 4096, PROT_READ) == 0, "mprotect");
	fds0 = count_fds();
	rng_state = seed ? seed : rng_state ^ (uint64_t)time(NULL);
	printf("INFO: fuzz seed %#llx\n", (unsigned long long)rng_state);
	for (int i = 0; i < 20000; i++) {
		uint64_t r = rnd();
		unsigned long cmd;
		void *p = arg.bytes;
		int target = dev, ret;

		for (int w = 0; w < 64; w++)
			arg.words[w] = (rnd() & 3) ? 0 : rnd();
		switch (r % 10) {
		case 0: case 1: case 2: case 3: case 4:
			cmd = cmds[rnd() % 6];
			break;
		case 5:  /* our magic, random number, direction and size */
			cmd = _IOC(rnd() % 4, SPILLWAY_IOC_MAGIC, rnd() % 256, rnd() % 512);
			break;
		case 6:  /* a valid command with the size field off */
			cmd = cmds[rnd() % 6] ^ ((1 + rnd() % 255) << _IOC_SIZESHIFT);
			break;
		case 7:  /* DMA-BUF ioctls on a live buffer */
			target = mapfd;
			cmd = (rnd() & 1) ? DMA_BUF_IOCTL_SYNC : _IOC(rnd() % 4, 'b', rnd() % 8, rnd() % 64);
			arg.words[0] = rnd() % 16;
			break;
		default: /* anything, except generic VFS ioctls that would act on devtmpfs itself */
			do
				cmd = (uint32_t)rnd();
			while (_IOC_TYPE(cmd) == 'X' || _IOC_TYPE(cmd) == 'f' || _IOC_TYPE(cmd) == 0x94 ||
			       _IOC_TYPE(cmd) == 'T');
			break;
		}
		/* shape the payload like the command's struct, often valid, often not */
		if (cmd == SPILLWAY_IOC_ALLOC) {
			arg.words[0] = (rnd() & 1) ? sizes[rnd() % 12] : (rnd() % 8) * CHUNK;
			arg.words[1] = (rnd() & 3) ? (rnd() & 1) : rnd();
		} else if (cmd == SPILLWAY_IOC_SET_LIMIT) {
			arg.words[0] = (rnd() & 1) ? sizes[rnd() % 12] : (rnd() % 16) * CHUNK;
		} else if (cmd == SPILLWAY_IOC_DEBUG_CHECK || cmd == SPILLWAY_IOC_DEBUG_PIN) {
			int fds[] = { -1, 0, dev, mapfd, live[0], 9999, (int)rnd() };
			int f = fds[rnd() % 7];

			if (cmd == SPILLWAY_IOC_DEBUG_CHECK) {
				arg.words[0] = (uint32_t)f | ((rnd() & 3) ? 0 : rnd() << 32);
			} else {
				arg.words[0] = (rnd() & 1) ? (uintptr_t)map + (rnd() % 5) * 4096 : rnd();
				arg.words[1] = (rnd() & 1) ? (rnd() % 1025) * 4096 : rnd();
				arg.words[2] = (uint32_t)f;
			}
		}
		switch (rnd() % 16) {
		case 0:
			p = NULL;
			break;
		case 3:   /* copy-in works, copy-out faults: nothing may be installed */
			if (target == dev && cmd == SPILLWAY_IOC_ALLOC) {
				/* room for it whatever limit the fuzz set: 4 live <= 14 MiB + 4 MiB mapped */
				set_limit(dev, 64 * MIB, NULL);
				p = ro;
			}
			break;
		case 1:
			p = (void *)(uintptr_t)rnd();
			break;
		case 2:
			p = (void *)0xffffffff81000000ULL;
			break;
		default:
			break;
		}
		ret = ioctl(target, cmd, p);
		counts[ret == 0 ? 0 : errno == ENOTTY ? 1 : errno == EINVAL ? 2 : 3]++;
		if (p == ro) {
			/* EFAULT, or ENOMEM when the fuzzed limit is full; never a descriptor */
			copyout_faults += ret < 0 && errno == EFAULT;
			EXPECT(ret < 0 && (errno == EFAULT || errno == ENOMEM),
			       "ALLOC into a read-only argument: %d (%s)", ret, strerror(errno));
		}
		if (ret == 0 && target == mapfd && cmd == DMA_BUF_IOCTL_EXPORT_SYNC_FILE && p == arg.bytes) {
			/* the dma-buf core's own export: a sync_file descriptor, the caller's to close */
			close(((struct dma_buf_export_sync_file *)arg.bytes)->fd);
			sync_files++;
		}
		if (ret == 0 && target == dev && cmd == SPILLWAY_IOC_ALLOC && p == arg.bytes) {
			struct spillway_alloc *a = (void *)arg.bytes;
			int slot = nfds++ % 4;

			close_if(live[slot]);
			live[slot] = a->fd;
		}
	}
	printf("INFO: fuzz results: ok %d, ENOTTY %d, EINVAL %d, other errors %d; "
	       "%d ALLOCs with a read-only argument; %d sync files exported\n", counts[0], counts[1],
	       counts[2], counts[3], copyout_faults, sync_files);
	EXPECT(counts[0] > 200 && counts[1] > 200 && counts[2] > 200 && copyout_faults > 20,
	       "fuzz did not reach all paths: ok %d ENOTTY %d EINVAL %d copy-out faults %d",
	       counts[0], counts[1], counts[2], copyout_faults);
	/* every descriptor the fuzz got is one of live[]: after the last ALLOCs, none more */
	fds1 = count_fds();
	{
		int held = 0;

		for (int i = 0; i < 4; i++)
			held += live[i] >= 0;
		EXPECT(fds1 == fds0 + held, "open fds %d before, %d after with %d live buffers: a "
		       "descriptor leaked", fds0, fds1, held);
	}
	for (int i = 0; i < 4; i++)
		close_if(live[i]);
	munmap(map, 2 * CHUNK);
	map = MAP_FAILED;
	close(mapfd);
	mapfd = -1;
	EXPECT(wait_pool_empty(dev, 3000), "pool not back at 0 after the fuzz");
	EXPECT(kernel_log_clean(bad, sizeof(bad)), "kernel log after the fuzz: %s", bad);
out:
	unmap_if(map, 2 * CHUNK);
	unmap_if(ro, 4096);
	close_if(mapfd);
	if (dev >= 0) {
		if (old_limit)
			set_limit(dev, old_limit, NULL);
		EXPECT(pool_info(dev, &info) == 0 && info.used_bytes == 0 && info.buffers == 0,
		       "POOL_INFO after fuzz: %s, used %llu", strerror(errno),
		       (unsigned long long)info.used_bytes);
		close(dev);
	}
}

/*
 * The fuzz with a seed that once exported a sync_file from the live dma-buf (DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
 * a descriptor the fuzz then counted as leaked), and with a seed from the clock.
 */
static void t_fuzz(void)
{
	fuzz_run(0xf656aafb71dc11ecULL);
	fuzz_run(0);
}

/*
 * A production build (no SPILLWAY_DEBUG) has no debug ioctls even as root and even when loaded
 * with debug_ioctls=1 (an unknown parameter there), and no debug_* parameters.
 */
static void t_debug_off(void)
{
	struct spillway_debug_check c;
	struct spillway_debug_pin pin;
	struct spillway_version v;
	int dev = dev_open();

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	memset(&v, 0, sizeof(v));
	REQUIRE(xioctl(dev, SPILLWAY_IOC_VERSION, &v) == 0, "VERSION");
	EXPECT(v.debug_ioctls == 0, "debug_ioctls %u", v.debug_ioctls);
	EXPECT(debug_check(dev, 0, &c) == -ENOTTY, "DEBUG_CHECK not -ENOTTY");
	memset(&pin, 0, sizeof(pin));
	EXPECT(xioctl(dev, SPILLWAY_IOC_DEBUG_PIN, &pin) == -ENOTTY, "DEBUG_PIN not -ENOTTY");
	EXPECT(access("/sys/module/spillway/parameters/debug_ioctls", F_OK) && errno == ENOENT,
	       "parameter debug_ioctls exists");
	EXPECT(access("/sys/module/spillway/parameters/debug_fail_above_order", F_OK) && errno == ENOENT,
	       "parameter debug_fail_above_order exists");
out:
	close_if(dev);
}

/*
 * What a forked child inherits (docs/kmod.md, Security): the DMA-BUF fd and a MAP_SHARED mapping
 * keep the buffer (and its charges) alive after the parent freed it, until the child drops them;
 * a mapping marked MADV_DONTFORK is not inherited, so a child that also closes the fd holds nothing.
 */
static int fork_case(int dev, int dontfork, char *why, size_t len)
{
	int fd = do_alloc(dev, CHUNK, 0, NULL), go[2] = { -1, -1 }, ready[2] = { -1, -1 }, held = -1;
	uint8_t *p = MAP_FAILED;
	char c;
	pid_t pid = -1;

	if (fd < 0 || pipe(go) || pipe(ready)) {
		snprintf(why, len, "setup: %s", strerror(fd < 0 ? -fd : errno));
		goto out;
	}
	p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || (dontfork && madvise(p, CHUNK, MADV_DONTFORK))) {
		snprintf(why, len, "mmap/madvise: %s", strerror(errno));
		goto out;
	}
	memset(p, 0x5a, CHUNK);
	pid = fork();
	if (pid == 0) {
		/* the child: drops the inherited fd when told to (as the shim's atfork handler may) */
		if (dontfork)
			close(fd);
		c = dontfork ? '0' + (msync(p, 4096, MS_ASYNC) == 0) : '0' + (p[100] == 0x5a);
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	if (pid < 0 || read(ready[0], &c, 1) != 1) {
		snprintf(why, len, "fork/child: %s", strerror(errno));
		goto out;
	}
	if (dontfork && c != '0') {
		snprintf(why, len, "MADV_DONTFORK: the mapping is in the child");
		goto out;
	}
	if (!dontfork && c != '1') {
		snprintf(why, len, "the child does not see the parent's bytes through the inherited mapping");
		goto out;
	}
	/* the parent frees its side */
	munmap(p, CHUNK);
	p = MAP_FAILED;
	close(fd);
	fd = -1;
	{
		struct spillway_pool_info info;

		usleep(100000);
		held = pool_info(dev, &info) == 0 ? (int)info.buffers : -1;
	}
	if (write(go[1], "g", 1) != 1)
		held = -2;
out:
	if (pid > 0)
		waitpid(pid, NULL, 0);
	unmap_if(p, CHUNK);
	close_if(fd);
	close_if(go[0]);
	close_if(go[1]);
	close_if(ready[0]);
	close_if(ready[1]);
	return held;
}

static void t_fork_inherits(void)
{
	char why[256] = "";
	int dev = dev_open(), held;

	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	held = fork_case(dev, 0, why, sizeof(why));
	EXPECT(held == 1, "plain fork: %d buffers held by the child after the parent freed, want 1 %s",
	       held, why);
	EXPECT(wait_pool_empty(dev, 2000), "pool not empty after the child exited");
	why[0] = 0;
	held = fork_case(dev, 1, why, sizeof(why));
	EXPECT(held == 0, "MADV_DONTFORK + child closes the fd: %d buffers left after the parent freed, "
	       "want 0 %s", held, why);
out:
	close_if(dev);
}

/* ---------------------------------------------------------------- the CUDA shim on the real device */

/* VmLck of a process in KiB, -1 when unknown. */
static long vmlck_of(pid_t pid)
{
	char path[64], buf[4096], *p;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, "VmLck:");
	return p ? strtol(p + 6, NULL, 10) : -1;
}

/* Read the child's stdout until a line containing want; the lines read so far go to log. */
static int read_until(FILE *in, const char *want, char *log, size_t len)
{
	char line[4096];

	while (fgets(line, sizeof(line), in)) {
		if (strlen(log) + strlen(line) < len)
			strcat(log, line);
		if (strstr(line, want))
			return 1;
	}
	return 0;
}

/*
 * The CUDA shim (LD_PRELOAD, built from shim/src) over the fake libcuda, as nobody in the device's
 * group with a 64 MiB RLIMIT_MEMLOCK, spilling to the real /dev/spillway (SPILLWAY_BACKING=kmod):
 * spill 20 MiB, write and read it back, free; the pool and the memlock charge follow; then an
 * allocation left to process exit. Run when the initramfs has /shim (run.sh builds it).
 */
static void t_shim_real_device(void)
{
	static char log[16384];
	struct spillway_pool_info info;
	char pi[8192];
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, dev = dev_open(), status;
	FILE *from = NULL;
	pid_t pid = -1;
	long lck;

	log[0] = 0;
	REQUIRE(dev >= 0, "open: %s", strerror(errno));
	REQUIRE(access("/shim/shimprog13", X_OK) == 0, "/shim/shimprog13 missing from the initramfs");
	REQUIRE(pipe(in) == 0 && pipe(out) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = { 64 * MIB, 64 * MIB };
		char *const argv[] = { "shimprog13", "init", "a:drv:20M", "w:0:20M", "s", "pause",
				       "f:drv:0", "s", "pause", "a:drv:10M", "w:1:10M", "pause", "exit",
				       NULL };
		char *const envp[] = { "LD_PRELOAD=/shim/libspillway_shim.so",
				       "LD_LIBRARY_PATH=/shim:/lib/x86_64-linux-gnu",
				       "SPILLWAY_BACKING=kmod", "FAKECUDA_VRAM=256M",
				       "SPILLWAY_VRAM_BUDGET=8M", "SPILLWAY_MIN_SPILL=1M",
				       "SPILLWAY_HOST_LIMIT=1G", "SPILLWAY_STATS_DIR=/tmp",
				       "SPILLWAY_LOG=warn", "PATH=/bin", NULL };

		dup2(in[0], 0);
		dup2(out[1], 1);
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || drop_privileges(1))
			_exit(120);
		execve("/shim/shimprog13", argv, envp);
		_exit(121);
	}
	REQUIRE(pid > 0, "fork");
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	from = fdopen(out[0], "r");
	out[0] = -1;
	REQUIRE(from, "fdopen");

	/* 1: spilled into the pool, written and read back */
	REQUIRE(read_until(from, "\"op\":\"pause\"", log, sizeof(log)), "shimprog stopped: %s", log);
	EXPECT(strstr(log, "{\"op\":\"a\",\"slot\":0,\"r\":0,") != NULL, "alloc failed: %s", log);
	EXPECT(strstr(log, "{\"op\":\"w\",\"ok\":true}") != NULL, "write/read back failed: %s", log);
	REQUIRE(pool_info(dev, &info) == 0, "POOL_INFO");
	EXPECT(info.used_bytes == 20 * MIB && info.buffers == 1,
	       "pool after the spill: used %llu buffers %llu, want 20 MiB in 1 (shim log: %s)",
	       (unsigned long long)info.used_bytes, (unsigned long long)info.buffers, log);
	lck = vmlck_of(pid);
	EXPECT(lck == 20 * 1024, "VmLck of the shim's process %ld kB, want 20480 (charged)", lck);
	EXPECT(read_file(SPILLWAY_SYSFS_DIR "/pool_info", pi, sizeof(pi)) > 0 &&
	       strstr(pi, "user uid=65534 bytes=20971520 buffers=1") != NULL,
	       "pool_info does not charge nobody 20 MiB: %s", pi);
	printf("INFO: shim on /dev/spillway: 20 MiB spilled, pool %llu bytes, VmLck %ld kB\n",
	       (unsigned long long)info.used_bytes, lck);
	REQUIRE(write(in[1], "\n", 1) == 1, "resume");

	/* 2: freed: the pool and the charge are back */
	REQUIRE(read_until(from, "\"op\":\"pause\"", log, sizeof(log)), "shimprog stopped: %s", log);
	EXPECT(strstr(log, "{\"op\":\"f\",\"r\":0}") != NULL, "free failed: %s", log);
	EXPECT(wait_pool_empty(dev, 2000), "pool not empty after the shim freed");
	lck = vmlck_of(pid);
	EXPECT(lck == 0, "VmLck %ld kB after the free, want 0 (returned)", lck);
	REQUIRE(write(in[1], "\n", 1) == 1, "resume");

	/* 3: an allocation left to process exit */
	REQUIRE(read_until(from, "\"op\":\"pause\"", log, sizeof(log)), "shimprog stopped: %s", log);
	EXPECT(strstr(log, "{\"op\":\"a\",\"slot\":1,\"r\":0,") != NULL, "second alloc failed: %s", log);
	EXPECT(pool_info(dev, &info) == 0 && info.used_bytes == 10 * MIB, "pool %llu, want 10 MiB",
	       (unsigned long long)info.used_bytes);
	REQUIRE(write(in[1], "\n", 1) == 1, "resume");
	REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
	pid = -1;
	EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "shimprog status %#x: %s", status, log);
	EXPECT(wait_pool_empty(dev, 3000), "pool not empty after the shim's process exited");
	EXPECT(read_file(SPILLWAY_SYSFS_DIR "/pool_info", pi, sizeof(pi)) > 0 && !strstr(pi, "user uid="),
	       "a user still holds pool memory: %s", pi);
out:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (from)
		fclose(from);
	close_if(in[0]);
	close_if(in[1]);
	close_if(out[0]);
	close_if(out[1]);
	close_if(dev);
}

/* ---------------------------------------------------------------- runner */

struct test {
	const char *name;
	void (*fn)(void);
	int timeout_s;
	int explicit_only;   /* run only when named on the command line */
};

static const struct test tests[] = {
	{ "device-node-0660-group", t_device_node, 10 },
	{ "device-not-world-accessible", t_not_world_accessible, 10 },
	{ "ioctl-version", t_version, 10 },
	{ "ioctl-bad-input-enotty-einval-efault", t_bad_input, 10 },
	{ "alloc-free-loop-pool-returns-to-zero", t_alloc_free_loop, 60 },
	{ "sysfs-files-and-owner-tgid", t_sysfs, 10 },
	{ "mmap-pattern-kernel-sees-same-bytes-via-sg-and-vmap", t_mmap_sg, 30 },
	{ "alloc-fallback-to-smaller-chunks-only-with-flag", t_fallback_flag, 30 },
	{ "pin-user-pages-longterm-of-mapping", t_pin_longterm, 30 },
	{ "o-direct-io-into-and-from-mapping", t_o_direct, 30 },
	{ "process-vm-readv-writev-of-mapping", t_process_vm, 30 },
	{ "mapping-keeps-buffer-after-close", t_lifetime, 10 },
	{ "pool-limit-enforced", t_limit, 20 },
	{ "unprivileged-rlimit-memlock-and-eperm", t_unprivileged, 20 },
	{ "sigkill-with-live-buffers-returns-every-page", t_kill, 30 },
	{ "pressure-poll-and-sysfs", t_pressure_poll, 40 },
	{ "memlock-bypass-fork-passfd", t_memlock_fork_passfd, 30 },
	{ "memlock-bypass-exec", t_memlock_exec, 30 },
	{ "memcg-max-limits-pinning", t_memcg, 60 },
	{ "user-quota-per-uid", t_user_quota, 30 },
	{ "sysfs-pool-info-restricted-and-escaped", t_pool_info_restricted, 20 },
	{ "zeroing-after-fill-free-realloc", t_zeroing_reuse, 30 },
	{ "alloc-copyout-efault-leaks-no-fd", t_copyout_efault, 20 },
	{ "fork-child-inherits-buffer-unless-dontfork-and-closed", t_fork_inherits, 20 },
	{ "fuzz-20000-random-ioctls-no-fd-leak-pool-zero-dmesg-clean", t_fuzz, 180 },
	{ "debug-ioctls-absent-in-production-build", t_debug_off, 10, 1 },
	{ "shim-fakecuda-spills-to-real-device-pool-and-memlock-return", t_shim_real_device, 60, 1 },
};

int main(int argc, char **argv)
{
	int failures = 0, dev;
	const char *only = argc > 2 ? argv[2] : NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "--exec-chain"))
		return exec_chain(atoi(argv[2]), atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "--hold"))
		return hold_buffer(argv[2]);
	if (argc < 2) {
		fprintf(stderr, "usage: %s <group-id> [test-name]\n", argv[0]);
		return 2;
	}
	g_group = (unsigned int)strtoul(argv[1], NULL, 10);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const struct test *t = &tests[i];
		struct timespec t0, t1;
		int pfd[2], status;
		char detail[1024] = "";
		pid_t pid;
		ssize_t n;

		if (only ? strcmp(only, t->name) != 0 : t->explicit_only)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (pipe(pfd))
			return 2;
		pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			alarm(t->timeout_s);
			rng_state ^= (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL;
			g_ok = 1;
			t->fn();
			if (!g_ok && write(pfd[1], g_detail, strlen(g_detail)) < 0)
				_exit(3);
			_exit(g_ok ? 0 : 1);
		}
		close(pfd[1]);
		n = read(pfd[0], detail, sizeof(detail) - 1);
		detail[n > 0 ? n : 0] = 0;
		close(pfd[0]);
		waitpid(pid, &status, 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (WIFSIGNALED(status))
			snprintf(detail, sizeof(detail), "test process died of signal %d%s",
				 WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
		/* every test must leave the pool empty */
		dev = dev_open();
		if (status == 0 && (dev < 0 || !wait_pool_empty(dev, 2000))) {
			snprintf(detail, sizeof(detail), "pool not empty after the test");
			status = 1;
		}
		close_if(dev);
		if (status == 0) {
			printf("PASS: %s\n", t->name);
		} else {
			printf("FAIL: %s\n  detail: %s\n", t->name, detail);
			failures++;
		}
		printf("INFO: %s took %.2f s\n", t->name,
		       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	printf("SPWTEST-RESULT: %d\n", failures);
	return failures ? 1 : 0;
}
