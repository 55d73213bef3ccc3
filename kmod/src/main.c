// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * main.c - the spillway module: /dev/spillway (ioctl, poll), its sysfs files under
 * /sys/class/spillway/spillway/, module parameters, load and unload.
 */
#include <linux/capability.h>
#include <linux/cdev.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uidgid.h>

#include "spw.h"

MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("spillway: pinned, accounted host memory pool exported as DMA-BUF");
MODULE_VERSION("1.0");
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
MODULE_IMPORT_NS("DMA_BUF");
#else
MODULE_IMPORT_NS(DMA_BUF);
#endif

/* ---------------------------------------------------------------- parameters */

static unsigned long pool_limit_bytes;
static unsigned int group;
unsigned int spw_pressure_moderate_mb;
unsigned int spw_pressure_critical_mb;
unsigned int spw_pressure_interval_ms = 1000;
unsigned long spw_user_quota_bytes;

/* Reading the parameter shows the live limit (sysfs and SET_LIMIT change it after load). */
static int spw_param_limit_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%llu\n", spw_pool_limit());
}

static const struct kernel_param_ops spw_param_limit_ops = {
	.set = param_set_ulong,
	.get = spw_param_limit_get,
};

module_param_cb(pool_limit_bytes, &spw_param_limit_ops, &pool_limit_bytes, 0444);
MODULE_PARM_DESC(pool_limit_bytes,
		 "System-wide pool limit in bytes at load (0: half of RAM); change it later in sysfs");
module_param(group, uint, 0444);
MODULE_PARM_DESC(group, "Group id owning /dev/spillway (mode 0660); default 0 (root)");
module_param_named(user_quota_bytes, spw_user_quota_bytes, ulong, 0644);
MODULE_PARM_DESC(user_quota_bytes,
		 "Most bytes of the pool one user (uid) may hold, all its processes together (0: no quota)");
module_param_named(pressure_moderate_mb, spw_pressure_moderate_mb, uint, 0644);
MODULE_PARM_DESC(pressure_moderate_mb, "MemAvailable below this is moderate pressure (0: 10% of RAM)");
module_param_named(pressure_critical_mb, spw_pressure_critical_mb, uint, 0644);
MODULE_PARM_DESC(pressure_critical_mb, "MemAvailable below this is critical pressure (0: 4% of RAM)");
module_param_named(pressure_interval_ms, spw_pressure_interval_ms, uint, 0644);
MODULE_PARM_DESC(pressure_interval_ms, "Period of the memory pressure check (min 10)");

/* ---------------------------------------------------------------- device state */

static dev_t spw_devt;
static struct cdev spw_cdev;
static struct class *spw_class;
/*
 * The device is allocated (spw_device_alloc) and freed by its release when the last reference
 * goes, which may be after cdev_device_del (an open sysfs file, CONFIG_DEBUG_KOBJECT_RELEASE's
 * delayed release). Unload waits for that release: it runs module code.
 */
static struct device *spw_dev;
static bool spw_dev_added;
static DECLARE_COMPLETION(spw_dev_released);

/* Per open file: the pressure event count it has seen (POOL_INFO acknowledges). */
struct spw_file {
	u64 seen_events;
};

/* ---------------------------------------------------------------- ioctls */

static long spw_ioctl_version(void __user *uarg)
{
	struct spillway_version v;

	if (copy_from_user(&v, uarg, sizeof(v)))
		return -EFAULT;
	if (v.pad0 || v.reserved)
		return -EINVAL;
	v.version = SPILLWAY_UAPI_VERSION;
	v.chunk_order = SPILLWAY_CHUNK_ORDER;
	v.chunk_size = SPILLWAY_CHUNK_SIZE;
	v.max_alloc_bytes = SPILLWAY_MAX_ALLOC_BYTES;
	v.debug_ioctls = spw_debug_ioctls;
	return copy_to_user(uarg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long spw_ioctl_pool_info(struct spw_file *sf, void __user *uarg)
{
	struct spillway_pool_info info;

	if (copy_from_user(&info, uarg, sizeof(info)))
		return -EFAULT;
	if (info.flags || info.reserved[0] || info.reserved[1])
		return -EINVAL;
	spw_pool_fill_info(&info);
	if (copy_to_user(uarg, &info, sizeof(info)))
		return -EFAULT;
	WRITE_ONCE(sf->seen_events, info.pressure_events);
	return 0;
}

static long spw_ioctl_set_limit(struct file *file, void __user *uarg)
{
	struct spillway_set_limit req;
	u64 old;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.reserved[0] || req.reserved[1])
		return -EINVAL;
	ret = spw_pool_set_limit(req.limit_bytes, &old);
	if (ret)
		return ret;
	req.old_limit_bytes = old;
	return copy_to_user(uarg, &req, sizeof(req)) ? -EFAULT : 0;
}

static long spw_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case SPILLWAY_IOC_VERSION:
		return spw_ioctl_version(uarg);
	case SPILLWAY_IOC_ALLOC:
		return spw_ioctl_alloc(file, uarg);
	case SPILLWAY_IOC_POOL_INFO:
		return spw_ioctl_pool_info(file->private_data, uarg);
	case SPILLWAY_IOC_SET_LIMIT:
		return spw_ioctl_set_limit(file, uarg);
	case SPILLWAY_IOC_DEBUG_CHECK:
	case SPILLWAY_IOC_DEBUG_PIN:
		return spw_debug_ioctl(cmd, uarg);   /* -ENOTTY unless a test build loaded with debug_ioctls=1 */
	}
	return -ENOTTY;
}

static int spw_open(struct inode *inode, struct file *file)
{
	struct spw_file *sf = kzalloc(sizeof(*sf), GFP_KERNEL);

	if (!sf)
		return -ENOMEM;
	sf->seen_events = atomic64_read(&spw_pool.pressure_events);
	file->private_data = sf;
	return nonseekable_open(inode, file);
}

static int spw_release_file(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

/* EPOLLPRI once the pressure state changed since this file last read POOL_INFO. */
static __poll_t spw_poll(struct file *file, poll_table *wait)
{
	struct spw_file *sf = file->private_data;

	poll_wait(file, &spw_pool.wq, wait);
	if (atomic64_read(&spw_pool.pressure_events) != READ_ONCE(sf->seen_events))
		return EPOLLPRI;
	return 0;
}

static const struct file_operations spw_fops = {
	.owner = THIS_MODULE,
	.open = spw_open,
	.release = spw_release_file,
	.unlocked_ioctl = spw_ioctl,
	.compat_ioctl = compat_ptr_ioctl,   /* every struct has the same layout on 32-bit */
	.poll = spw_poll,
};

/* ---------------------------------------------------------------- sysfs */

static ssize_t pool_info_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return spw_pool_info_show(buf);
}
/* 0440 root:<group>: it names other users' processes (pid, command) and their sizes */
static DEVICE_ATTR(pool_info, 0440, pool_info_show, NULL);

static ssize_t pool_limit_bytes_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", spw_pool_limit());
}

/* Only the value is parsed; nothing else (never a file descriptor) comes out of a sysfs write. */
static ssize_t pool_limit_bytes_store(struct device *dev, struct device_attribute *attr,
				      const char *buf, size_t count)
{
	u64 limit;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	ret = kstrtou64(buf, 0, &limit);
	if (ret)
		return ret;
	ret = spw_pool_set_limit(limit, NULL);
	return ret ? ret : count;
}
static DEVICE_ATTR_RW(pool_limit_bytes);

static ssize_t pool_used_bytes_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", spw_pool_used());
}
static DEVICE_ATTR_RO(pool_used_bytes);

static ssize_t buffers_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&spw_pool.buffers));
}
static DEVICE_ATTR_RO(buffers);

static ssize_t pressure_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", spw_pressure_name(READ_ONCE(spw_pool.pressure)));
}
static DEVICE_ATTR_RO(pressure);

static struct attribute *spw_attrs[] = {
	&dev_attr_pool_info.attr,
	&dev_attr_pool_limit_bytes.attr,
	&dev_attr_pool_used_bytes.attr,
	&dev_attr_buffers.attr,
	&dev_attr_pressure.attr,
	NULL,
};
ATTRIBUTE_GROUPS(spw);

/* devtmpfs creates /dev/spillway as 0660 root:<group>: never world-accessible. */
static char *spw_devnode(SPW_DEVNODE_CONST struct device *dev, umode_t *mode, kuid_t *uid,
			 kgid_t *gid)
{
	if (mode)
		*mode = 0660;
	if (gid)
		*gid = make_kgid(&init_user_ns, group);
	return NULL;
}

/* sysfs files of the device belong to root:<group>, so pool_info (0440) is readable by the group */
static void spw_get_ownership(SPW_DEVNODE_CONST struct device *dev, kuid_t *uid, kgid_t *gid)
{
	*gid = make_kgid(&init_user_ns, group);
}

static const struct device_type spw_device_type = {
	.name = SPW_NAME,
	.groups = spw_groups,
	.devnode = spw_devnode,
};

static void spw_dev_release(struct device *dev)
{
	kfree(dev);
	complete(&spw_dev_released);
}

/* ---------------------------------------------------------------- load / unload */

static int __init spw_init(void)
{
	u64 ram = (u64)totalram_pages() << PAGE_SHIFT;
	u64 limit = pool_limit_bytes ? pool_limit_bytes : ram / 2;
	int ret;

	if (!gid_valid(make_kgid(&init_user_ns, group))) {
		pr_err(SPW_NAME ": group=%u is not a valid group id\n", group);
		return -EINVAL;
	}
	if (limit > ram) {
		pr_err(SPW_NAME ": pool_limit_bytes=%llu exceeds RAM (%llu bytes)\n", limit, ram);
		return -EINVAL;
	}
	spw_pool_init(limit);

	ret = spw_debug_init();
	if (ret)
		return ret;
	spw_class = spw_class_create(SPW_NAME);
	if (IS_ERR(spw_class)) {
		ret = PTR_ERR(spw_class);
		goto err_debug;
	}
	spw_class->get_ownership = spw_get_ownership;
	ret = alloc_chrdev_region(&spw_devt, 0, 1, SPW_NAME);
	if (ret)
		goto err_class;

	spw_dev = kzalloc(sizeof(*spw_dev), GFP_KERNEL);
	if (!spw_dev) {
		ret = -ENOMEM;
		goto err_region;
	}
	reinit_completion(&spw_dev_released);
	cdev_init(&spw_cdev, &spw_fops);
	spw_cdev.owner = THIS_MODULE;
	device_initialize(spw_dev);
	spw_dev->class = spw_class;
	spw_dev->type = &spw_device_type;
	spw_dev->devt = spw_devt;
	spw_dev->release = spw_dev_release;
	ret = dev_set_name(spw_dev, SPW_NAME);
	if (ret)
		goto err_put;
	ret = cdev_device_add(&spw_cdev, spw_dev);
	if (ret)
		goto err_put;
	spw_dev_added = true;
	spw_pressure_start(spw_dev);
	pr_info(SPW_NAME ": uapi %u.%u, /dev/%s group %u, pool limit %llu bytes%s%s\n",
		SPILLWAY_UAPI_VERSION_MAJOR, SPILLWAY_UAPI_VERSION_MINOR, SPW_NAME, group, limit,
		IS_ENABLED(SPILLWAY_DEBUG) ? ", test build" : "",
		spw_debug_ioctls ? ", debug ioctls on" : "");
	return 0;

err_put:
	put_device(spw_dev);
	wait_for_completion(&spw_dev_released);
err_region:
	unregister_chrdev_region(spw_devt, 1);
err_class:
	class_destroy(spw_class);
err_debug:
	spw_debug_exit();
	return ret;
}

static void __exit spw_exit(void)
{
	u64 used;

	/* every DMA-BUF holds a module reference (dma_buf_export), so no buffer can be alive here */
	spw_pressure_stop();
	if (spw_dev_added)
		cdev_device_del(&spw_cdev, spw_dev);
	put_device(spw_dev);
	/* the release is module code: it must have run before the module's memory goes */
	wait_for_completion(&spw_dev_released);
	unregister_chrdev_region(spw_devt, 1);
	class_destroy(spw_class);
	spw_debug_exit();
	used = spw_pool_used();
	if (used || atomic64_read(&spw_pool.buffers))
		pr_err(SPW_NAME ": leak at unload: %llu bytes in %lld buffers\n", used,
		       (long long)atomic64_read(&spw_pool.buffers));
	spw_pool_exit();
	pr_info(SPW_NAME ": unloaded\n");
}

module_init(spw_init);
module_exit(spw_exit);
