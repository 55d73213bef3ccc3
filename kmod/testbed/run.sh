#!/usr/bin/env bash
# kmod/testbed/run.sh - build the spillway kernel module against Debian's current kernel, boot
# that kernel under qemu (TCG, never KVM) with a busybox initramfs, run the guest tests, and
# judge by the lines the guest prints on the serial console.
#
# Output: every guest result as "PASS: <name>" / "FAIL: <name>" on stdout (a test runner counts
# them), progress on stderr. Exit 0 only when the guest printed its done sentinel with rc=0,
# the test program's result line, and no FAIL line; non-zero on any failure, timeout or missing
# sentinel. Must run as root (it installs packages with apt).
#
# Environment:
#   SPILLWAY_CACHE          cache root (default ~/.cache/spillway); downloads and the extracted
#                           kernel live in $SPILLWAY_CACHE/kmod-testbed, so reruns are fast
#   SPILLWAY_KVER           kernel ABI (default: what linux-image-amd64 depends on now)
#   SPILLWAY_KMOD_TIMEOUT   seconds the guest may run (default 240)
#   SPILLWAY_TESTBED_BUN    bun binary to run the TypeScript client in the guest (default: the
#                           repository's node_modules/.bin/bun). A missing bun is a failure;
#                           "none" skips that part on purpose (said in the output)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KMOD=$(cd "$HERE/.." && pwd)
REPO=$(cd "$KMOD/.." && pwd)
CACHE=${SPILLWAY_CACHE:-$HOME/.cache/spillway}/kmod-testbed
TIMEOUT=${SPILLWAY_KMOD_TIMEOUT:-240}
DEBS=$CACHE/debs
WORK=$CACHE/run
export DEBIAN_FRONTEND=noninteractive

T0=$(date +%s.%N)
TLAST=$T0
TIMINGS=""
log() { echo "kmod-testbed: $*" >&2; }
lap() {
	local now
	now=$(date +%s.%N)
	TIMINGS+=$(awk -v l="$1" -v a="$now" -v b="$TLAST" 'BEGIN { printf "  %-34s %6.1f s", l, a - b }')$'\n'
	TLAST=$now
}
# A host-side failure is reported like a test result, so a runner counting lines sees it.
die() {
	echo "FAIL: kmod-testbed ($*)"
	log "ERROR: $*"
	exit 1
}

# the TypeScript client's end-to-end test is part of the run: no bun is a failure, not a skip
BUN=${SPILLWAY_TESTBED_BUN:-$REPO/node_modules/.bin/bun}
if [ "$BUN" != none ] && [ ! -x "$BUN" ]; then
	die "ts-client-e2e: no bun at $BUN (npm install provides node_modules/.bin/bun; SPILLWAY_TESTBED_BUN=none skips the TypeScript client on purpose)"
fi
[ "$(id -u)" = 0 ] || die "must run as root: it installs qemu and friends with apt"
mkdir -p "$DEBS" "$CACHE"
# one run at a time per cache (the run directory is shared)
exec 9>"$CACHE/.lock"
flock 9

# ---------------------------------------------------------------- 1. host packages
APT_UPDATED=0
apt_update() {
	if [ $APT_UPDATED = 0 ]; then
		log "apt-get update"
		apt-get update -qq >/dev/null || die "apt-get update failed"
		APT_UPDATED=1
	fi
}
PKGS=(qemu-system-x86 busybox-static cpio gcc-12 make libc6-dev)
MISSING=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || MISSING+=("$p")
done
if [ ${#MISSING[@]} -gt 0 ]; then
	apt_update
	log "apt-get install ${MISSING[*]}"
	apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null ||
		die "apt-get install ${MISSING[*]} failed"
fi
lap "host packages"

# ---------------------------------------------------------------- 2. kernel ABI
resolve_kver() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }'
}
KVER=${SPILLWAY_KVER:-}
if [ -z "$KVER" ]; then
	KVER=$(resolve_kver)
	if [ -z "$KVER" ]; then
		apt_update
		KVER=$(resolve_kver)
	fi
fi
KDIR_CACHE=$CACHE/kernel/$KVER
if [ ! -f "$KDIR_CACHE/.complete" ] && [ -z "${SPILLWAY_KVER:-}" ]; then
	# about to download: resolve against fresh lists (a stale ABI vanishes at point releases)
	apt_update
	KVER=$(resolve_kver)
	KDIR_CACHE=$CACHE/kernel/$KVER
fi
[ -n "$KVER" ] || die "cannot tell which kernel linux-image-amd64 depends on (apt-cache depends)"
log "kernel ABI $KVER"

# ---------------------------------------------------------------- 3. kernel image + headers (cached)
# apt-get download + dpkg -x: nothing is installed, and never a kernel image.
fetch() {   # fetch <package>...: into $DEBS unless there already
	local need=() p
	for p in "$@"; do
		ls "$DEBS/${p}"_*.deb >/dev/null 2>&1 || need+=("$p")
	done
	[ ${#need[@]} = 0 ] && return 0
	chown _apt:root "$DEBS" 2>/dev/null || true   # lets apt's sandbox user write there
	log "apt-get download ${need[*]}"
	if ! (cd "$DEBS" && apt-get download -qq "${need[@]}" >/dev/null 2>&1); then
		apt_update
		(cd "$DEBS" && apt-get download -qq "${need[@]}" >/dev/null) ||
			die "apt-get download ${need[*]} failed"
	fi
}
if [ ! -f "$KDIR_CACHE/.complete" ]; then
	rm -rf "$KDIR_CACHE"
	mkdir -p "$KDIR_CACHE/image" "$KDIR_CACHE/headers"
	IMGPKG=linux-image-$KVER-unsigned
	apt-cache show "$IMGPKG" >/dev/null 2>&1 || IMGPKG=linux-image-$KVER
	HDRDEPS=$(apt-cache depends "linux-headers-$KVER" 2>/dev/null |
		awk '/Depends: linux-(headers-.*-common|kbuild-)/ { print $2 }')
	[ -n "$HDRDEPS" ] || { apt_update; HDRDEPS=$(apt-cache depends "linux-headers-$KVER" |
		awk '/Depends: linux-(headers-.*-common|kbuild-)/ { print $2 }'); }
	[ -n "$HDRDEPS" ] || die "cannot resolve the packages linux-headers-$KVER needs"
	# shellcheck disable=SC2086
	fetch "$IMGPKG" "linux-headers-$KVER" $HDRDEPS
	# only what the guest needs from the image package (all of it unpacks to ~400 MB)
	dpkg-deb --fsys-tarfile "$(ls "$DEBS/$IMGPKG"_*.deb | head -1)" |
		tar -x -C "$KDIR_CACHE/image" "./boot/vmlinuz-$KVER" "./boot/config-$KVER" \
			"./lib/modules/$KVER/kernel/drivers/block/brd.ko" ||
		die "extracting $IMGPKG failed"
	for p in "linux-headers-$KVER" $HDRDEPS; do
		dpkg -x "$(ls "$DEBS/${p}"_*.deb | head -1)" "$KDIR_CACHE/headers" ||
			die "extracting $p failed"
	done
	# the arch Makefile includes the -common tree by absolute path: point it into the cache
	sed -i "s#^include /usr/src/#include $KDIR_CACHE/headers/usr/src/#" \
		"$KDIR_CACHE/headers/usr/src/linux-headers-$KVER/Makefile"
	touch "$KDIR_CACHE/.complete"
fi
KDIR=$KDIR_CACHE/headers/usr/src/linux-headers-$KVER
VMLINUZ=$KDIR_CACHE/image/boot/vmlinuz-$KVER
KCONFIG=$KDIR_CACHE/image/boot/config-$KVER
BRD=$KDIR_CACHE/image/lib/modules/$KVER/kernel/drivers/block/brd.ko
for f in "$KDIR/Makefile" "$VMLINUZ" "$KCONFIG" "$BRD"; do
	[ -f "$f" ] || die "missing $f (remove $KDIR_CACHE to refetch)"
done
grep -q '^CONFIG_MODULE_SIG_FORCE=y' "$KCONFIG" && die "kernel $KVER enforces module signatures"
grep -q '^CONFIG_DMA_SHARED_BUFFER=y' "$KCONFIG" || die "kernel $KVER lacks CONFIG_DMA_SHARED_BUFFER=y"
lap "kernel image + headers"

# ---------------------------------------------------------------- 4. build module + guest tests
rm -rf "$WORK"
mkdir -p "$WORK/build" "$WORK/initramfs"/{bin,dev,proc,sys,tmp,lib/modules}
# two builds outside the repo (no objects there): the test build (SPILLWAY_DEBUG=1: debug ioctls,
# fault injection) the tests drive, and the production build, checked to lack them
build_ko() {   # build_ko <dir> <SPILLWAY_DEBUG value>
	mkdir -p "$1"
	cp -r "$KMOD/src" "$KMOD/include" "$1/"
	if ! make -s -C "$KDIR" M="$1/src" SPILLWAY_DEBUG="$2" modules >"$1.log" 2>&1; then
		cat "$1.log" >&2
		die "module build (SPILLWAY_DEBUG=$2) failed (log above)"
	fi
	grep -v 'Skipping BTF generation' "$1.log" >&2 || true
	[ -f "$1/src/spillway.ko" ] || die "module build (SPILLWAY_DEBUG=$2) produced no spillway.ko"
	modinfo -F vermagic "$1/src/spillway.ko" 2>/dev/null | grep -q "^$KVER " ||
		grep -aq "vermagic=$KVER " "$1/src/spillway.ko" || die "spillway.ko vermagic is not $KVER"
}
build_ko "$WORK/build" 1
build_ko "$WORK/build-prod" 0
KO=$WORK/build/src/spillway.ko
KO_PROD=$WORK/build-prod/src/spillway.ko
# host-side checks, reported like guest results
nm "$KO_PROD" >"$WORK/prod.nm" && nm "$KO" >"$WORK/test.nm" || die "nm failed"
if grep -qE 'spw_debug_ioctl|spw_ioctl_debug|spw_importer|debug_ioctls' "$WORK/prod.nm"; then
	echo "FAIL: production-build-has-no-debug-code"
	echo "  detail: $(grep -E 'debug' "$WORK/prod.nm" | tr '\n' ' ')"
	HOST_FAIL=1
elif grep -q spw_debug_ioctl "$WORK/test.nm"; then
	echo "PASS: production-build-has-no-debug-code"
else
	echo "FAIL: production-build-has-no-debug-code"
	echo "  detail: the test build has no spw_debug_ioctl either: the nm check proves nothing"
	HOST_FAIL=1
fi
gcc -static -O2 -Wall -Wextra -Wno-sign-compare -Wno-format-truncation \
	-Wno-missing-field-initializers -I"$KMOD/include" \
	-o "$WORK/initramfs/bin/spwtest" "$HERE/guest/spwtest.c" || die "guest test build failed"
# the CUDA shim (shim/src, its Makefile) with the fake libcuda and its test program, for the
# shim-on-the-real-device test (issue 18 item 12); dynamic, so their libraries go along
SHIMW=$WORK/shim
mkdir -p "$SHIMW"
FX=$REPO/test/fixtures/fakecuda
FXLIB=(-O2 -Wall -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic)
if ! make -s -C "$REPO/shim" BUILD="$SHIMW" >"$WORK/shim-build.log" 2>&1 ||
	! gcc -o "$SHIMW/libcuda.so.1" "${FXLIB[@]}" -Wl,-soname,libcuda.so.1 "$FX/fakecuda.c" -lpthread ||
	! gcc -o "$SHIMW/libcudart.so.13" "${FXLIB[@]}" -DFAKE_CUDART=13 -Wl,-soname,libcudart.so.13 "$FX/fakecudart.c" -ldl -lpthread ||
	! gcc -o "$SHIMW/shimprog13" -O2 -Wall "$FX/shimprog.c" -L"$SHIMW" -l:libcuda.so.1 -l:libcudart.so.13 -ldl -lpthread; then
	cat "$WORK/shim-build.log" >&2
	echo "FAIL: shim-build-for-guest"
	echo "  detail: the shim or the fake CUDA did not build (log above)"
	HOST_FAIL=1
	rm -rf "$SHIMW"
fi
lap "build spillway.ko + guest tests"

# ---------------------------------------------------------------- 5. initramfs
IRD=$WORK/initramfs
cp /bin/busybox "$IRD/bin/busybox"
cp "$KO" "$BRD" "$IRD/lib/modules/"
cp "$KO_PROD" "$IRD/lib/modules/spillway-prod.ko"
cp "$HERE/init.sh" "$IRD/init"
chmod 755 "$IRD/init"
# bun + the client's TypeScript (ffi/, core/errors.ts, core/paths.ts, kmod/*.ts) for the end-to-end client test
BUN=${SPILLWAY_TESTBED_BUN:-$REPO/node_modules/.bin/bun}
if [ "$BUN" != none ] && [ -x "$BUN" ]; then
	BUN=$(readlink -f "$BUN")
	cp "$BUN" "$IRD/bin/bun"
	for lib in $(ldd "$BUN" | grep -o '/[^ ]*'); do
		mkdir -p "$IRD$(dirname "$lib")"
		cp -L "$lib" "$IRD$lib"
	done
	mkdir -p "$IRD/spillway/ffi" "$IRD/spillway/core" "$IRD/spillway/kmod/testbed/guest"
	cp "$REPO"/ffi/*.ts "$IRD/spillway/ffi/"
	cp "$REPO/core/errors.ts" "$REPO/core/paths.ts" "$IRD/spillway/core/"
	cp "$KMOD"/*.ts "$IRD/spillway/kmod/"
	cp "$HERE/guest/client_e2e.ts" "$IRD/spillway/kmod/testbed/guest/"
	echo '{ "type": "module" }' >"$IRD/spillway/package.json"
else
	log "SPILLWAY_TESTBED_BUN=none: the TypeScript client will not run in the guest"
	mkdir -p "$IRD/etc"
	echo "SPILLWAY_TESTBED_BUN=none" >"$IRD/etc/spillway-no-bun"
fi
if [ -d "$SHIMW" ]; then
	mkdir -p "$IRD/shim"
	cp "$SHIMW/libspillway_shim.so" "$SHIMW/libcuda.so.1" "$SHIMW/libcudart.so.13" "$SHIMW/shimprog13" "$IRD/shim/"
	for lib in $(LD_LIBRARY_PATH=$SHIMW ldd "$SHIMW/shimprog13" "$SHIMW/libspillway_shim.so" | grep -o '/[^ ]*' | sort -u); do
		case $lib in "$SHIMW"/*) continue ;; esac
		mkdir -p "$IRD$(dirname "$lib")"
		cp -L "$lib" "$IRD$lib"
	done
fi
# uncompressed: unpacking gzip under TCG costs more than copying the bytes
(cd "$IRD" && find . -print0 | cpio --null -o -H newc --quiet >"$WORK/initrd.cpio") ||
	die "packing the initramfs failed"
lap "initramfs"

# ---------------------------------------------------------------- 6. boot (TCG) and test
# init_on_alloc=0: Debian's kernel zeroes every page it hands out by default, which would hide a
# module that forgot __GFP_ZERO (zeroing-after-fill-free-realloc checks the module's own zeroing)
LOG=$WORK/serial.log
log "booting $KVER under qemu TCG (timeout ${TIMEOUT}s)"
set +e
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m 1536M -smp 2 -nographic -no-reboot \
	-nic none -kernel "$VMLINUZ" -initrd "$WORK/initrd.cpio" \
	-append "console=ttyS0 panic=-1 quiet oops=panic init_on_alloc=0" </dev/null 2>&1 |
	tr -d '\r' | sed -u 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' >"$LOG"
QRC=${PIPESTATUS[0]}
set -e
lap "qemu boot + guest tests"

# ---------------------------------------------------------------- 7. verdict
# results first (what a runner counts), then the guest's other lines for a human
grep -E '^(PASS|FAIL): |^  detail: ' "$LOG" || true
echo "---- guest log (INFO and kernel lines) ----"
sed -n '/SPILLWAY-GUEST-BOOTED/,$p' "$LOG" | grep -vE '^(PASS|FAIL): |^  detail: ' || true
echo "---- timings ----"
printf '%s' "$TIMINGS"
awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "  %-34s %6.1f s\n", "total", a - b }'

reason=""
if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
	reason="guest timed out after ${TIMEOUT}s"
elif ! grep -q 'SPILLWAY-GUEST-BOOTED' "$LOG"; then
	reason="guest never booted"
elif ! grep -q '^SPILLWAY-GUEST-DONE ' "$LOG"; then
	reason="guest stopped before its done sentinel"
elif ! grep -q '^SPWTEST-RESULT: 0$' "$LOG" || grep -qE '^SPWTEST-RESULT: [1-9]' "$LOG"; then
	reason="guest test program did not report 0 failures"
elif ! grep -q '^SPILLWAY-GUEST-DONE rc=0 ' "$LOG" || grep -q '^FAIL: ' "$LOG"; then
	reason="guest tests failed"
elif [ -n "${HOST_FAIL:-}" ]; then
	reason="a host-side check failed"
fi
if [ -n "$reason" ]; then
	grep -q '^SPILLWAY-GUEST-DONE ' "$LOG" || { echo "---- last 60 console lines ----"; tail -n 60 "$LOG"; }
	echo "FAIL: kmod-testbed ($reason; serial log $LOG)"
	exit 1
fi
log "all guest tests passed ($(grep -c '^PASS: ' "$LOG") PASS lines)"
exit 0
