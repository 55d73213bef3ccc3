// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * debug.c - test-only ioctls, compiled only into test builds (make SPILLWAY_DEBUG=1; see Kbuild)
 * and enabled there by the module parameter debug_ioctls=1 (CAP_SYS_ADMIN): look at a buffer
 * the way the kernel does. DEBUG_CHECK imports the DMA-BUF like a device driver (attach +
 * map_dma_buf) and checksums the bytes page by page through the sg table and again through
 * dma_buf_vmap. DEBUG_PIN long-term pins a user mapping the way a GPU driver registering host
 * memory does (pin_user_pages with FOLL_WRITE | FOLL_LONGTERM under the mmap lock). Also the
 * fault injection of buffer.c (debug_fail_above_order). A production build has none of this.
 */
#include <linux/capability.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/iosys-map.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "spw.h"

bool spw_debug_ioctls;
unsigned int spw_debug_fail_above_order = SPILLWAY_CHUNK_ORDER;

module_param_named(debug_ioctls, spw_debug_ioctls, bool, 0444);
MODULE_PARM_DESC(debug_ioctls, "Enable the DEBUG_CHECK/DEBUG_PIN ioctls (CAP_SYS_ADMIN; test builds)");
module_param_named(debug_fail_above_order, spw_debug_fail_above_order, uint, 0644);
MODULE_PARM_DESC(debug_fail_above_order,
		 "With debug_ioctls=1: pretend pages above this order are unavailable (tests the fallback)");

/* A device with a 64-bit DMA mask to attach as importer. */
static struct platform_device *spw_importer;

int spw_debug_init(void)
{
	struct platform_device_info info = {
		.name = SPW_NAME "-importer",
		.id = PLATFORM_DEVID_NONE,
		.dma_mask = DMA_BIT_MASK(64),
	};

	if (!spw_debug_ioctls)
		return 0;
	spw_importer = platform_device_register_full(&info);
	if (IS_ERR(spw_importer)) {
		int ret = PTR_ERR(spw_importer);

		spw_importer = NULL;
		return ret;
	}
	return 0;
}

void spw_debug_exit(void)
{
	if (spw_importer)
		platform_device_unregister(spw_importer);
	spw_importer = NULL;
}

/* A DMA-BUF of ours, with a reference, or an error. */
static struct dma_buf *spw_get_own(int fd)
{
	struct dma_buf *db = dma_buf_get(fd);

	if (IS_ERR(db))
		return db;
	if (db->ops != &spw_dmabuf_ops) {
		dma_buf_put(db);
		return ERR_PTR(-EINVAL);
	}
	return db;
}

static long spw_ioctl_debug_check(void __user *uarg)
{
	struct spillway_debug_check req;
	struct dma_buf_attachment *at;
	struct iosys_map map;
	struct scatterlist *sg;
	struct sg_table *sgt;
	struct dma_buf *db;
	struct spw_buf *b;
	u64 csum = SPILLWAY_CSUM_INIT;
	long ret = 0;
	unsigned int i;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved[0] || req.reserved[1])
		return -EINVAL;
	db = spw_get_own(req.fd);
	if (IS_ERR(db))
		return PTR_ERR(db);
	b = db->priv;   /* struct spw_buf is the first member of the export */

	at = dma_buf_attach(db, &spw_importer->dev);
	if (IS_ERR(at)) {
		ret = PTR_ERR(at);
		goto put;
	}
	sgt = spw_dma_buf_map(at, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt)) {
		ret = PTR_ERR(sgt);
		goto detach;
	}
	ret = dma_buf_begin_cpu_access(db, DMA_FROM_DEVICE);
	if (ret)
		goto unmap;
	req.sg_nents = 0;
	req.sg_bytes = 0;
	req.sg_chunks_ok = 0;
	for_each_sgtable_sg(sgt, sg, i) {
		unsigned long j, npages = sg->length >> PAGE_SHIFT;

		req.sg_nents++;
		req.sg_bytes += sg->length;
		if (i < b->nr_chunks && sg_page(sg) == b->chunks[i].page && sg->offset == 0 &&
		    sg->length == PAGE_SIZE << b->chunks[i].order)
			req.sg_chunks_ok++;
		/* read what a device would DMA: the pages the sg table names */
		for (j = 0; j < npages; j++) {
			const u64 *p = kmap_local_page(nth_page(sg_page(sg), j));

			csum = spillway_csum(csum, p, PAGE_SIZE / sizeof(u64));
			kunmap_local(p);
		}
		cond_resched();
	}
	req.csum_sg = csum;
	dma_buf_end_cpu_access(db, DMA_FROM_DEVICE);
unmap:
	spw_dma_buf_unmap(at, sgt, DMA_BIDIRECTIONAL);
detach:
	dma_buf_detach(db, at);
	if (ret)
		goto put;

	ret = spw_dma_buf_vmap(db, &map);
	if (ret)
		goto put;
	req.csum_vmap = spillway_csum(SPILLWAY_CSUM_INIT, map.vaddr, b->size / sizeof(u64));
	spw_dma_buf_vunmap(db, &map);
put:
	dma_buf_put(db);
	if (!ret && copy_to_user(uarg, &req, sizeof(req)))
		ret = -EFAULT;
	return ret;
}

static long spw_ioctl_debug_pin(void __user *uarg)
{
	struct spillway_debug_pin req;
	struct page **pages;
	struct dma_buf *db;
	struct spw_buf *b;
	unsigned long npages, k = 0, j;
	unsigned int c;
	long pinned;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved[0] || req.reserved[1])
		return -EINVAL;
	if (!req.length || !PAGE_ALIGNED(req.addr) || !PAGE_ALIGNED(req.length))
		return -EINVAL;
	db = spw_get_own(req.fd);
	if (IS_ERR(db))
		return PTR_ERR(db);
	b = db->priv;
	if (req.length > b->size) {
		dma_buf_put(db);
		return -EINVAL;
	}
	npages = req.length >> PAGE_SHIFT;
	pages = kvmalloc_array(npages, sizeof(*pages), GFP_KERNEL);
	if (!pages) {
		dma_buf_put(db);
		return -ENOMEM;
	}
	mmap_read_lock(current->mm);
	pinned = spw_pin_user_pages(req.addr, npages, FOLL_WRITE | FOLL_LONGTERM, pages);
	mmap_read_unlock(current->mm);
	req.pinned = pinned;
	req.matched = 0;
	/* compare with the buffer's pages from offset 0, in order */
	for (c = 0; c < b->nr_chunks && pinned > 0 && k < (unsigned long)pinned; c++)
		for (j = 0; j < (1UL << b->chunks[c].order) && k < (unsigned long)pinned; j++, k++)
			if (pages[k] == nth_page(b->chunks[c].page, j))
				req.matched++;
	if (pinned > 0)
		unpin_user_pages(pages, pinned);
	kvfree(pages);
	dma_buf_put(db);
	return copy_to_user(uarg, &req, sizeof(req)) ? -EFAULT : 0;
}

long spw_debug_ioctl(unsigned int cmd, void __user *uarg)
{
	if (!spw_debug_ioctls)
		return -ENOTTY;
	switch (cmd) {
	case SPILLWAY_IOC_DEBUG_CHECK:
		return spw_ioctl_debug_check(uarg);
	case SPILLWAY_IOC_DEBUG_PIN:
		return spw_ioctl_debug_pin(uarg);
	}
	return -ENOTTY;
}
