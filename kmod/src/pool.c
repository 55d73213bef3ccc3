// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * pool.c - system-wide accounting of spillway memory: the limit, what is in use, per-order chunk
 * counts, and the memory pressure watcher that wakes poll() on /dev/spillway.
 */
#include <linux/jiffies.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/string_helpers.h>
#include <linux/sysfs.h>
#include <linux/uidgid.h>

#include "spw.h"

/* the lock is static so the pool_limit_bytes parameter can be read at any time */
struct spw_pool spw_pool = { .lock = __SPIN_LOCK_UNLOCKED(spw_pool.lock) };

void spw_pool_init(u64 limit)
{
	int i;

	spw_pool.limit = limit;
	spw_pool.used = 0;
	spw_pool.peak = 0;
	atomic64_set(&spw_pool.buffers, 0);
	atomic64_set(&spw_pool.allocs_total, 0);
	atomic64_set(&spw_pool.frees_total, 0);
	atomic64_set(&spw_pool.failed_total, 0);
	for (i = 0; i < SPILLWAY_NR_ORDERS; i++)
		atomic64_set(&spw_pool.chunks[i], 0);
	atomic64_set(&spw_pool.next_id, 0);
	mutex_init(&spw_pool.list_lock);
	INIT_LIST_HEAD(&spw_pool.list);
	INIT_LIST_HEAD(&spw_pool.users);
	spw_pool.pressure = SPILLWAY_PRESSURE_NONE;
	spw_pool.mem_available = 0;
	atomic64_set(&spw_pool.pressure_events, 0);
	init_waitqueue_head(&spw_pool.wq);
}

/* The pool's record of a uid, or NULL. Called with spw_pool.lock held. */
static struct spw_user *spw_user_find(kuid_t uid)
{
	struct spw_user *u;

	list_for_each_entry(u, &spw_pool.users, node)
		if (uid_eq(u->uid, uid))
			return u;
	return NULL;
}

/*
 * Take bytes out of the pool and out of the uid's quota before allocating pages, so concurrent
 * callers cannot overshoot either. -ENOMEM over the pool limit or over user_quota_bytes.
 */
int spw_pool_reserve(u64 bytes, kuid_t uid)
{
	struct spw_user *fresh = kzalloc(sizeof(*fresh), GFP_KERNEL), *u;
	u64 quota = READ_ONCE(spw_user_quota_bytes);
	int ret = 0;

	if (!fresh)
		return -ENOMEM;
	spin_lock(&spw_pool.lock);
	u = spw_user_find(uid);
	if (bytes > spw_pool.limit || spw_pool.used > spw_pool.limit - bytes) {
		ret = -ENOMEM;
	} else if (quota && (bytes > quota || (u && u->bytes > quota - bytes))) {
		ret = -ENOMEM;
	} else {
		if (!u) {
			u = fresh;
			fresh = NULL;
			u->uid = uid;
			list_add(&u->node, &spw_pool.users);
		}
		u->bytes += bytes;
		u->buffers++;
		spw_pool.used += bytes;
		if (spw_pool.used > spw_pool.peak)
			spw_pool.peak = spw_pool.used;
	}
	spin_unlock(&spw_pool.lock);
	kfree(fresh);
	return ret;
}

void spw_pool_unreserve(u64 bytes, kuid_t uid)
{
	struct spw_user *u, *gone = NULL;

	spin_lock(&spw_pool.lock);
	if (WARN_ON_ONCE(bytes > spw_pool.used))
		spw_pool.used = 0;
	else
		spw_pool.used -= bytes;
	u = spw_user_find(uid);
	if (!WARN_ON_ONCE(!u || u->bytes < bytes || !u->buffers)) {
		u->bytes -= bytes;
		u->buffers--;
		if (!u->buffers) {
			list_del(&u->node);
			gone = u;
		}
	}
	spin_unlock(&spw_pool.lock);
	kfree(gone);
}

/* At unload: free user records (there are none unless a buffer leaked). */
void spw_pool_exit(void)
{
	struct spw_user *u, *tmp;

	list_for_each_entry_safe(u, tmp, &spw_pool.users, node) {
		list_del(&u->node);
		kfree(u);
	}
}

/* A limit below what is in use only stops new allocations; live buffers are never revoked. */
int spw_pool_set_limit(u64 limit, u64 *old)
{
	u64 ram = (u64)totalram_pages() << PAGE_SHIFT;

	if (limit > ram)
		return -EINVAL;
	spin_lock(&spw_pool.lock);
	if (old)
		*old = spw_pool.limit;
	spw_pool.limit = limit;
	spin_unlock(&spw_pool.lock);
	return 0;
}

u64 spw_pool_limit(void)
{
	u64 v;

	spin_lock(&spw_pool.lock);
	v = spw_pool.limit;
	spin_unlock(&spw_pool.lock);
	return v;
}

u64 spw_pool_used(void)
{
	u64 v;

	spin_lock(&spw_pool.lock);
	v = spw_pool.used;
	spin_unlock(&spw_pool.lock);
	return v;
}

void spw_pool_fill_info(struct spillway_pool_info *info)
{
	int i;

	spin_lock(&spw_pool.lock);
	info->limit_bytes = spw_pool.limit;
	info->used_bytes = spw_pool.used;
	info->peak_bytes = spw_pool.peak;
	spin_unlock(&spw_pool.lock);
	info->pressure = READ_ONCE(spw_pool.pressure);
	info->mem_available_bytes = READ_ONCE(spw_pool.mem_available);
	info->pressure_events = atomic64_read(&spw_pool.pressure_events);
	info->buffers = atomic64_read(&spw_pool.buffers);
	info->allocs_total = atomic64_read(&spw_pool.allocs_total);
	info->frees_total = atomic64_read(&spw_pool.frees_total);
	info->failed_total = atomic64_read(&spw_pool.failed_total);
	for (i = 0; i < SPILLWAY_NR_ORDERS; i++)
		info->chunks[i] = atomic64_read(&spw_pool.chunks[i]);
}

const char *spw_pressure_name(int state)
{
	switch (state) {
	case SPILLWAY_PRESSURE_NONE:
		return "none";
	case SPILLWAY_PRESSURE_MODERATE:
		return "moderate";
	case SPILLWAY_PRESSURE_CRITICAL:
		return "critical";
	}
	return "unknown";
}

/* Threshold in pages: the parameter in MiB, or a share of RAM when the parameter is 0. */
static unsigned long spw_threshold(unsigned int mb, unsigned int percent)
{
	if (mb)
		return (unsigned long)mb << (20 - PAGE_SHIFT);
	return totalram_pages() / 100 * percent;
}

static void spw_pressure_check(struct work_struct *work)
{
	unsigned long avail = si_mem_available();
	unsigned long moderate = spw_threshold(READ_ONCE(spw_pressure_moderate_mb), 10);
	unsigned long critical = spw_threshold(READ_ONCE(spw_pressure_critical_mb), 4);
	unsigned int interval = max(READ_ONCE(spw_pressure_interval_ms), 10U);
	int old = spw_pool.pressure, state;

	/* leaving a state needs 1/8 of headroom above its threshold, so the state does not flap */
	if (avail < critical || (old == SPILLWAY_PRESSURE_CRITICAL && avail < critical + critical / 8))
		state = SPILLWAY_PRESSURE_CRITICAL;
	else if (avail < moderate ||
		 (old >= SPILLWAY_PRESSURE_MODERATE && avail < moderate + moderate / 8))
		state = SPILLWAY_PRESSURE_MODERATE;
	else
		state = SPILLWAY_PRESSURE_NONE;

	WRITE_ONCE(spw_pool.mem_available, (u64)avail << PAGE_SHIFT);
	if (state != old) {
		WRITE_ONCE(spw_pool.pressure, state);
		atomic64_inc(&spw_pool.pressure_events);
		pr_info(SPW_NAME ": memory pressure %s -> %s (available %lu MiB)\n",
			spw_pressure_name(old), spw_pressure_name(state), avail >> (20 - PAGE_SHIFT));
		wake_up_interruptible(&spw_pool.wq);
		if (spw_pool.dev)
			sysfs_notify(&spw_pool.dev->kobj, NULL, "pressure");
	}
	queue_delayed_work(system_freezable_wq, &spw_pool.work, msecs_to_jiffies(interval));
}

void spw_pressure_start(struct device *dev)
{
	spw_pool.dev = dev;
	INIT_DELAYED_WORK(&spw_pool.work, spw_pressure_check);
	queue_delayed_work(system_freezable_wq, &spw_pool.work, 0);
}

void spw_pressure_stop(void)
{
	cancel_delayed_work_sync(&spw_pool.work);
	spw_pool.dev = NULL;
}

/*
 * The command name as one printable token: control, non-ASCII, space, '=', '"' and '\\' become
 * \ooo octal escapes, so a process cannot forge lines or fields of pool_info, nor send terminal
 * escape sequences to whoever reads it.
 */
static void spw_escape_comm(const char *comm, char *out, size_t len)
{
	int n = string_escape_mem(comm, strnlen(comm, TASK_COMM_LEN), out, len - 1,
				  ESCAPE_OCTAL | ESCAPE_NAP | ESCAPE_APPEND, " =\"\\");

	out[min_t(size_t, max(n, 0), len - 1)] = 0;
}

/*
 * Human-readable summary, per-user totals, then one line per live buffer; truncated to one page.
 * The file is 0440 root:<group> (see spw_get_ownership in main.c): it names other users' processes.
 */
ssize_t spw_pool_info_show(char *buf)
{
	struct spillway_pool_info info;
	struct spw_user *u;
	struct spw_buf *b;
	int n = 0, i, shown = 0, total = 0;

	memset(&info, 0, sizeof(info));
	spw_pool_fill_info(&info);
	n += sysfs_emit_at(buf, n, "limit_bytes     %llu\n", info.limit_bytes);
	n += sysfs_emit_at(buf, n, "used_bytes      %llu\n", info.used_bytes);
	n += sysfs_emit_at(buf, n, "peak_bytes      %llu\n", info.peak_bytes);
	n += sysfs_emit_at(buf, n, "buffers         %llu\n", info.buffers);
	n += sysfs_emit_at(buf, n, "allocs_total    %llu\n", info.allocs_total);
	n += sysfs_emit_at(buf, n, "frees_total     %llu\n", info.frees_total);
	n += sysfs_emit_at(buf, n, "failed_total    %llu\n", info.failed_total);
	n += sysfs_emit_at(buf, n, "pressure        %s\n", spw_pressure_name(info.pressure));
	n += sysfs_emit_at(buf, n, "mem_available   %llu\n", info.mem_available_bytes);
	n += sysfs_emit_at(buf, n, "pressure_events %llu\n", info.pressure_events);
	n += sysfs_emit_at(buf, n, "user_quota      %lu\n", READ_ONCE(spw_user_quota_bytes));
	n += sysfs_emit_at(buf, n, "chunks_by_order");
	for (i = 0; i < SPILLWAY_NR_ORDERS; i++)
		n += sysfs_emit_at(buf, n, " %d:%llu", i, info.chunks[i]);
	n += sysfs_emit_at(buf, n, "\n");

	spin_lock(&spw_pool.lock);
	list_for_each_entry(u, &spw_pool.users, node) {
		if (n > PAGE_SIZE / 2)
			break;
		n += sysfs_emit_at(buf, n, "user uid=%u bytes=%llu buffers=%llu\n",
				   from_kuid(&init_user_ns, u->uid), u->bytes, u->buffers);
	}
	spin_unlock(&spw_pool.lock);

	mutex_lock(&spw_pool.list_lock);
	list_for_each_entry(b, &spw_pool.list, node) {
		char comm[4 * TASK_COMM_LEN + 1];

		total++;
		if (n > PAGE_SIZE - 240)
			continue;
		spw_escape_comm(b->comm, comm, sizeof(comm));
		n += sysfs_emit_at(buf, n,
				   "buffer id=%llu size=%llu chunks=%u min_order=%u tgid=%d uid=%u comm=%s locked_pages=%lu\n",
				   b->id, b->size, b->nr_chunks, b->min_order, b->tgid,
				   from_kuid(&init_user_ns, b->uid), comm, b->locked_pages);
		shown++;
	}
	mutex_unlock(&spw_pool.list_lock);
	if (shown < total)
		n += sysfs_emit_at(buf, n, "... %d more buffers\n", total - shown);
	return n;
}
