// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * buffer.c - spillway buffers: 2 MiB compound pages, charged to the pool (limit and per-user
 * quota), to the allocating user's RLIMIT_MEMLOCK and to its memory cgroup, exported as a DMA-BUF.
 *
 * The mmap path inserts the pages themselves (vm_insert_pages) rather than their PFNs
 * (remap_pfn_range): only then can pin_user_pages(FOLL_LONGTERM) pin the mapping, which is what
 * cuMemHostRegister needs. Mappings are ordinary cached (write-back) memory.
 */
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/iosys-map.h>
#include <linux/cred.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "spw.h"

/* One importer attachment: the sg table it has mapped, if any (for CPU access syncs). */
struct spw_attach {
	struct list_head node;
	struct device *dev;
	struct sg_table *sgt;
	enum dma_data_direction dir;
};

/* Per-buffer state the DMA-BUF ops need beyond struct spw_buf. */
struct spw_export {
	struct spw_buf buf;
	struct list_head attachments;   /* guarded by buf.lock */
};

static struct spw_export *to_export(struct dma_buf *db)
{
	return db->priv;
}

/*
 * RLIMIT_MEMLOCK against the user, as io_uring charges it (__io_account_mem): user_struct.locked_vm
 * is shared by every process of the uid and is not reset by exec or exit.
 */
static int spw_user_charge(struct user_struct *user, unsigned long pages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	unsigned long cur = atomic_long_read(&user->locked_vm), new;

	do {
		new = cur + pages;
		if (new < cur || new > limit)
			return -ENOMEM;
	} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur, new));
	return 0;
}

/* Free pages, undo every charge. Safe on a partly built buffer. */
static void spw_buf_destroy(struct spw_export *ex)
{
	struct spw_buf *b = &ex->buf;
	unsigned int i;

	/* freeing a page also uncharges it from the memory cgroup it was charged to */
	for (i = 0; i < b->nr_chunks; i++) {
		__free_pages(b->chunks[i].page, b->chunks[i].order);
		atomic64_dec(&spw_pool.chunks[b->chunks[i].order]);
	}
	kvfree(b->chunks);
	if (b->user) {
		atomic_long_sub(b->locked_pages, &b->user->locked_vm);
		free_uid(b->user);
	}
	if (b->mm) {
		/* the process may be gone; its mm_struct is kept alive by our mmgrab */
		account_locked_vm(b->mm, b->locked_pages, false);
		mmdrop(b->mm);
	}
	if (b->reserved)
		spw_pool_unreserve(b->size, b->uid);
	kfree(ex);
}

/* Allocate the pages of a reserved, charged buffer. Largest order first; lower only with fallback. */
static int spw_buf_fill(struct spw_buf *b, bool fallback)
{
	/*
	 * __GFP_ACCOUNT: the pages count against the caller's memory cgroup (memory.max applies; with
	 * __GFP_RETRY_MAYFAIL a cgroup at its limit fails the allocation instead of OOM-killing).
	 */
	const gfp_t gfp = GFP_HIGHUSER | __GFP_COMP | __GFP_ZERO | __GFP_NOWARN | __GFP_RETRY_MAYFAIL |
			  __GFP_ACCOUNT;
	unsigned long remaining = b->size >> PAGE_SHIFT;
	unsigned int order = SPILLWAY_CHUNK_ORDER, cap = b->size / SPILLWAY_CHUNK_SIZE;

	b->chunks = kvmalloc_array(cap, sizeof(*b->chunks), GFP_KERNEL_ACCOUNT);
	if (!b->chunks)
		return -ENOMEM;
	b->min_order = order;
	while (remaining) {
		struct page *page;

		if (fatal_signal_pending(current))
			return -EINTR;
		if (spw_debug_fail_order(order))
			page = NULL;   /* fault injection for the test bed (debug builds only) */
		else
			page = alloc_pages(order ? gfp : gfp & ~__GFP_COMP, order);
		if (!page) {
			if (!fallback || order == 0)
				return -ENOMEM;
			order--;
			continue;
		}
		if (b->nr_chunks == cap) {
			/* fallback made more, smaller chunks than planned: grow the array */
			struct spw_chunk *more;

			more = kvmalloc_array(cap * 2, sizeof(*more), GFP_KERNEL_ACCOUNT);
			if (!more) {
				__free_pages(page, order);
				return -ENOMEM;
			}
			memcpy(more, b->chunks, cap * sizeof(*more));
			kvfree(b->chunks);
			b->chunks = more;
			cap *= 2;
		}
		b->chunks[b->nr_chunks].page = page;
		b->chunks[b->nr_chunks].order = order;
		b->nr_chunks++;
		atomic64_inc(&spw_pool.chunks[order]);
		b->min_order = min(b->min_order, order);
		remaining -= 1UL << order;
		cond_resched();
	}
	return 0;
}

static struct spw_export *spw_buf_create(u64 size, u32 flags, int *err)
{
	unsigned long pages = size >> PAGE_SHIFT;
	struct spw_export *ex;
	struct spw_buf *b;
	int ret;

	ex = kzalloc(sizeof(*ex), GFP_KERNEL_ACCOUNT);
	if (!ex) {
		*err = -ENOMEM;
		return NULL;
	}
	b = &ex->buf;
	INIT_LIST_HEAD(&ex->attachments);
	INIT_LIST_HEAD(&b->node);
	mutex_init(&b->lock);
	b->size = size;
	b->tgid = task_tgid_nr(current);
	b->uid = current_uid();
	get_task_comm(b->comm, current);

	/* the pool limit and the uid's share of it (user_quota_bytes) */
	ret = spw_pool_reserve(size, b->uid);
	if (ret)
		goto fail;
	b->reserved = true;

	/* RLIMIT_MEMLOCK unless the caller may lock memory without limit: the user, then the mm */
	if (!capable(CAP_IPC_LOCK)) {
		struct user_struct *user = get_current_user();

		ret = spw_user_charge(user, pages);
		if (ret) {
			free_uid(user);
			goto fail;
		}
		b->user = user;
		b->locked_pages = pages;
		if (current->mm) {
			ret = account_locked_vm(current->mm, pages, true);
			if (ret)
				goto fail;
			b->mm = current->mm;
			mmgrab(b->mm);
		}
	}
	ret = spw_buf_fill(b, flags & SPILLWAY_ALLOC_FALLBACK);
	if (ret)
		goto fail;
	return ex;
fail:
	spw_buf_destroy(ex);
	*err = ret;
	return NULL;
}

/* ---------------------------------------------------------------- DMA-BUF ops */

static int spw_attach(struct dma_buf *db, struct dma_buf_attachment *at)
{
	struct spw_export *ex = to_export(db);
	struct spw_attach *a = kzalloc(sizeof(*a), GFP_KERNEL);

	if (!a)
		return -ENOMEM;
	a->dev = at->dev;
	at->priv = a;
	mutex_lock(&ex->buf.lock);
	list_add(&a->node, &ex->attachments);
	mutex_unlock(&ex->buf.lock);
	return 0;
}

static void spw_detach(struct dma_buf *db, struct dma_buf_attachment *at)
{
	struct spw_export *ex = to_export(db);
	struct spw_attach *a = at->priv;

	mutex_lock(&ex->buf.lock);
	list_del(&a->node);
	mutex_unlock(&ex->buf.lock);
	kfree(a);
}

/* One sg entry per chunk: a 2 MiB compound page is physically contiguous. */
static struct sg_table *spw_map_dma_buf(struct dma_buf_attachment *at, enum dma_data_direction dir)
{
	struct spw_export *ex = to_export(at->dmabuf);
	struct spw_buf *b = &ex->buf;
	struct spw_attach *a = at->priv;
	struct sg_table *sgt;
	struct scatterlist *sg;
	int ret;
	unsigned int i;

	mutex_lock(&b->lock);
	if (a->sgt) {
		/* one mapping per attachment keeps the CPU-access syncs exact */
		ret = -EBUSY;
		goto unlock;
	}
	sgt = kzalloc(sizeof(*sgt), GFP_KERNEL);
	if (!sgt) {
		ret = -ENOMEM;
		goto unlock;
	}
	ret = sg_alloc_table(sgt, b->nr_chunks, GFP_KERNEL);
	if (ret)
		goto free_sgt;
	for_each_sgtable_sg(sgt, sg, i)
		sg_set_page(sg, b->chunks[i].page, PAGE_SIZE << b->chunks[i].order, 0);
	ret = dma_map_sgtable(at->dev, sgt, dir, 0);
	if (ret)
		goto free_table;
	a->sgt = sgt;
	a->dir = dir;
	mutex_unlock(&b->lock);
	return sgt;
free_table:
	sg_free_table(sgt);
free_sgt:
	kfree(sgt);
unlock:
	mutex_unlock(&b->lock);
	return ERR_PTR(ret);
}

static void spw_unmap_dma_buf(struct dma_buf_attachment *at, struct sg_table *sgt,
			      enum dma_data_direction dir)
{
	struct spw_export *ex = to_export(at->dmabuf);
	struct spw_attach *a = at->priv;

	mutex_lock(&ex->buf.lock);
	if (a->sgt == sgt)
		a->sgt = NULL;
	mutex_unlock(&ex->buf.lock);
	dma_unmap_sgtable(at->dev, sgt, dir, 0);
	sg_free_table(sgt);
	kfree(sgt);
}

static int spw_begin_cpu_access(struct dma_buf *db, enum dma_data_direction dir)
{
	struct spw_export *ex = to_export(db);
	struct spw_attach *a;

	mutex_lock(&ex->buf.lock);
	list_for_each_entry(a, &ex->attachments, node)
		if (a->sgt)
			dma_sync_sgtable_for_cpu(a->dev, a->sgt, dir);
	mutex_unlock(&ex->buf.lock);
	return 0;
}

static int spw_end_cpu_access(struct dma_buf *db, enum dma_data_direction dir)
{
	struct spw_export *ex = to_export(db);
	struct spw_attach *a;

	mutex_lock(&ex->buf.lock);
	list_for_each_entry(a, &ex->attachments, node)
		if (a->sgt)
			dma_sync_sgtable_for_device(a->dev, a->sgt, dir);
	mutex_unlock(&ex->buf.lock);
	return 0;
}

static int spw_mmap(struct dma_buf *db, struct vm_area_struct *vma)
{
	struct spw_buf *b = &to_export(db)->buf;
	unsigned long skip = vma->vm_pgoff, left = vma_pages(vma), addr = vma->vm_start;
	struct page **batch;
	unsigned int i;
	int ret = 0;

	/* a private mapping would COW: a long-term pin must land on the buffer's own pages */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	/* the dma-buf core checked vm_pgoff + length against the buffer size */
	batch = kmalloc_array(1UL << SPILLWAY_CHUNK_ORDER, sizeof(*batch), GFP_KERNEL);
	if (!batch)
		return -ENOMEM;
	spw_vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	for (i = 0; i < b->nr_chunks && left; i++) {
		unsigned long n = 1UL << b->chunks[i].order, j, count, want;

		if (skip >= n) {
			skip -= n;
			continue;
		}
		count = min(n - skip, left);
		for (j = 0; j < count; j++)
			batch[j] = nth_page(b->chunks[i].page, skip + j);
		want = count;
		ret = vm_insert_pages(vma, addr, batch, &want);
		if (ret)
			break;
		if (want) {     /* pages left uninserted without an error: should not happen */
			ret = -EFAULT;
			break;
		}
		addr += count << PAGE_SHIFT;
		left -= count;
		skip = 0;
	}
	kfree(batch);
	return ret;
}

static int spw_vmap(struct dma_buf *db, struct iosys_map *map)
{
	struct spw_buf *b = &to_export(db)->buf;
	unsigned long npages = b->size >> PAGE_SHIFT, k = 0, j;
	struct page **pages;
	unsigned int i;
	void *vaddr;

	pages = kvmalloc_array(npages, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;
	for (i = 0; i < b->nr_chunks; i++)
		for (j = 0; j < (1UL << b->chunks[i].order); j++)
			pages[k++] = nth_page(b->chunks[i].page, j);
	vaddr = vmap(pages, npages, VM_MAP, PAGE_KERNEL);   /* cached, like the user mapping */
	kvfree(pages);
	if (!vaddr)
		return -ENOMEM;
	mutex_lock(&b->lock);
	b->vaddr = vaddr;
	mutex_unlock(&b->lock);
	iosys_map_set_vaddr(map, vaddr);
	return 0;
}

static void spw_vunmap(struct dma_buf *db, struct iosys_map *map)
{
	struct spw_buf *b = &to_export(db)->buf;

	mutex_lock(&b->lock);
	b->vaddr = NULL;
	mutex_unlock(&b->lock);
	vunmap(map->vaddr);
}

/* Last reference gone (fds, mappings, importers): every page goes back. */
static void spw_release(struct dma_buf *db)
{
	struct spw_export *ex = to_export(db);

	mutex_lock(&spw_pool.list_lock);
	list_del(&ex->buf.node);
	mutex_unlock(&spw_pool.list_lock);
	atomic64_dec(&spw_pool.buffers);
	atomic64_inc(&spw_pool.frees_total);
	spw_buf_destroy(ex);
}

const struct dma_buf_ops spw_dmabuf_ops = {
	.attach = spw_attach,
	.detach = spw_detach,
	.map_dma_buf = spw_map_dma_buf,
	.unmap_dma_buf = spw_unmap_dma_buf,
	.release = spw_release,
	.begin_cpu_access = spw_begin_cpu_access,
	.end_cpu_access = spw_end_cpu_access,
	.mmap = spw_mmap,
	.vmap = spw_vmap,
	.vunmap = spw_vunmap,
};

/* ---------------------------------------------------------------- SPILLWAY_IOC_ALLOC */

long spw_ioctl_alloc(struct file *file, void __user *uarg)
{
	struct spillway_alloc req;
	struct spw_export *ex;
	struct dma_buf *db;
	int ret = 0, fd;
	DEFINE_DMA_BUF_EXPORT_INFO(exp);

	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags & ~SPILLWAY_ALLOC_FLAGS_ALL || req.reserved[0] || req.reserved[1])
		return -EINVAL;
	if (!req.size || req.size > SPILLWAY_MAX_ALLOC_BYTES ||
	    !IS_ALIGNED(req.size, SPILLWAY_CHUNK_SIZE))
		return -EINVAL;

	ex = spw_buf_create(req.size, req.flags, &ret);
	if (!ex) {
		atomic64_inc(&spw_pool.failed_total);
		return ret;
	}
	ex->buf.id = atomic64_inc_return(&spw_pool.next_id);

	exp.exp_name = SPW_NAME;
	exp.ops = &spw_dmabuf_ops;
	exp.size = req.size;
	exp.flags = O_RDWR;
	exp.priv = ex;
	db = dma_buf_export(&exp);
	if (IS_ERR(db)) {
		spw_buf_destroy(ex);
		atomic64_inc(&spw_pool.failed_total);
		return PTR_ERR(db);
	}
	/* from here the DMA-BUF owns the buffer: dma_buf_put() ends in spw_release() */
	mutex_lock(&spw_pool.list_lock);
	list_add_tail(&ex->buf.node, &spw_pool.list);
	mutex_unlock(&spw_pool.list_lock);
	atomic64_inc(&spw_pool.buffers);
	atomic64_inc(&spw_pool.allocs_total);   /* spw_release() counts the free, even below */

	/* reserve the fd, report it, and only then install it: a failed copy leaks nothing */
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		dma_buf_put(db);
		return fd;
	}
	req.fd = fd;
	req.buffer_id = ex->buf.id;
	req.nr_chunks = ex->buf.nr_chunks;
	req.min_order = ex->buf.min_order;
	if (copy_to_user(uarg, &req, sizeof(req))) {
		put_unused_fd(fd);
		dma_buf_put(db);
		return -EFAULT;
	}
	fd_install(fd, db->file);
	return 0;
}
