#!/bin/busybox sh
# /init of the test bed's initramfs: load the module, run the guest tests, check the kernel log,
# print a sentinel and power off. Every result line is "PASS: <name>" or "FAIL: <name>".
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup   # memcg-max-limits-pinning
export PATH=/bin
GROUP=4242
rc=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; [ -n "$2" ] && echo "  detail: $2"; rc=1; }
wait_node() {   # devtmpfs creates the node asynchronously
	i=0
	while [ ! -c /dev/spillway ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}
echo   # the firmware leaves the cursor mid-line
echo "SPILLWAY-GUEST-BOOTED kernel=$(uname -r) cpus=$(nproc) up=$(cut -d' ' -f1 /proc/uptime)s"

# brd: a RAM block device, because tmpfs rejects O_DIRECT
insmod /lib/modules/brd.ko rd_nr=1 rd_size=16384 || fail "insmod-brd"

if insmod /lib/modules/spillway.ko group=$GROUP debug_ioctls=1 pressure_interval_ms=100 \
	pool_limit_bytes=268435456; then
	pass "insmod-spillway-with-params"
	wait_node
	if [ "$(cat /sys/module/spillway/parameters/pool_limit_bytes)" = 268435456 ] &&
	   [ "$(cat /sys/class/spillway/spillway/pool_limit_bytes)" = 268435456 ]; then
		pass "pool-limit-parameter-applied"
	else
		fail "pool-limit-parameter-applied"
	fi
	/bin/spwtest $GROUP || rc=1
	# the CUDA shim over the fake libcuda, spilling to this device (as nobody: /tmp for its stats)
	chmod 1777 /tmp
	if [ -x /shim/shimprog13 ]; then
		/bin/spwtest $GROUP shim-fakecuda-spills-to-real-device-pool-and-memlock-return || rc=1
	else
		fail "shim-fakecuda-spills-to-real-device-pool-and-memlock-return" "no /shim in the initramfs (shim build failed on the host)"
	fi
	if grep -q '^user ' /sys/class/spillway/spillway/pool_info; then
		fail "pool-per-user-records-empty-after-tests" "$(grep '^user ' /sys/class/spillway/spillway/pool_info)"
	else
		pass "pool-per-user-records-empty-after-tests"
	fi

	# unloading with live buffers: each DMA-BUF holds a module reference, by fd or by mapping alone
	for how in fd map; do
		/bin/spwtest --hold $how >/tmp/hold.$how &
		hp=$!
		i=0
		while ! grep -q HOLDING /tmp/hold.$how 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
		used=$(cat /sys/class/spillway/spillway/pool_used_bytes)
		if ! grep -q HOLDING /tmp/hold.$how; then
			fail "unload-refused-while-buffer-alive-by-$how" "holder did not start"
		elif rmmod spillway 2>/dev/null; then
			fail "unload-refused-while-buffer-alive-by-$how" "rmmod succeeded with a live buffer"
		elif [ "$used" != 2097152 ] || [ "$(cat /sys/class/spillway/spillway/pool_used_bytes)" != 2097152 ]; then
			fail "unload-refused-while-buffer-alive-by-$how" "pool_used_bytes $used"
		else
			pass "unload-refused-while-buffer-alive-by-$how"
		fi
		kill -9 $hp
		wait $hp 2>/dev/null
	done
	# a sysfs file held open across the unload reads ENODEV afterwards (no use after free)
	exec 3</sys/class/spillway/spillway/pool_used_bytes
	if rmmod spillway; then pass "rmmod-after-tests"; else fail "rmmod-after-tests"; fi
	if cat <&3 >/tmp/after-unload 2>/dev/null; then
		fail "sysfs-file-open-across-unload-reads-enodev" "read gave '$(cat /tmp/after-unload)'"
	else
		pass "sysfs-file-open-across-unload-reads-enodev"
	fi
	exec 3<&-
	[ -e /sys/class/spillway ] && fail "sysfs-class-removed-on-unload" "/sys/class/spillway still there"
	# load and unload again: the device and class were freed and can be created anew
	if insmod /lib/modules/spillway.ko group=$GROUP && wait_node && rmmod spillway; then
		pass "reload-after-unload"
	else
		fail "reload-after-unload"
	fi
else
	fail "insmod-spillway-with-params"
fi

# the TypeScript client (kmod/*.ts over ffi/ under bun) loads, drives and unloads the module itself
if [ -e /etc/spillway-no-bun ]; then
	echo "INFO: TypeScript client not run in the guest ($(cat /etc/spillway-no-bun))"
elif [ -x /bin/bun ]; then
	if HOME=/tmp LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /bin/bun /spillway/kmod/testbed/guest/client_e2e.ts \
		/lib/modules/spillway.ko; then :; else fail "ts-client-run" "bun exited with $?"; fi
	rmmod spillway 2>/dev/null
else
	fail "ts-client-e2e" "no bun in the initramfs"
fi

# the production build with defaults: root group, limit half of RAM, and no debug ioctls even
# when asked for (debug_ioctls=1 is an unknown parameter there, ignored by the kernel)
if insmod /lib/modules/spillway-prod.ko debug_ioctls=1; then
	wait_node
	mode=$(stat -c '%a %u %g' /dev/spillway)
	if [ "$mode" = "660 0 0" ]; then pass "default-node-root-0660"; else fail "default-node-root-0660" "$mode"; fi
	mode=$(stat -c '%a %u %g' /sys/class/spillway/spillway/pool_info)
	if [ "$mode" = "440 0 0" ]; then pass "default-pool-info-root-0440"; else fail "default-pool-info-root-0440" "$mode"; fi
	/bin/spwtest 0 debug-ioctls-absent-in-production-build || rc=1
	if rmmod spillway; then pass "rmmod-defaults"; else fail "rmmod-defaults"; fi
else
	fail "insmod-spillway-production-build"
fi

if dmesg | grep -qE 'WARNING:|BUG:|Oops|Call Trace|general protection|spillway: leak'; then
	fail "dmesg-clean" "kernel log has warnings (below)"
	dmesg | grep -B2 -A20 -E 'WARNING:|BUG:|Oops|Call Trace|general protection|spillway: leak'
else
	pass "dmesg-clean-no-warning-bug-oops-leak"
fi
# allowed taint: O (4096, out-of-tree module) and E (8192, unsigned module)
taint=$(cat /proc/sys/kernel/tainted)
if [ $((taint & ~12288)) -eq 0 ]; then pass "taint-only-out-of-tree-unsigned"; else fail "taint-only-out-of-tree-unsigned" "tainted=$taint"; fi

echo "---- dmesg (spillway) ----"
dmesg | grep -E 'spillway|taint' | tail -n 30
echo "SPILLWAY-GUEST-DONE rc=$rc up=$(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
