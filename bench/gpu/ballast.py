"""VRAM ballast: hold all GPU memory but KEEP GiB so every benchmarked method sees the same free
VRAM, as on a smaller card. Plain cudaMalloc through torch (never managed memory).

Usage: python3 ballast.py KEEP_GIB [DEVICE]
Prints one line `READY free=<bytes> held=<bytes> total=<bytes>` once the level is reached, then
sleeps until SIGTERM/SIGINT (or until its parent dies: PR_SET_PDEATHSIG), and frees on exit.
Prints `ERROR <reason>` and exits 2 when the level cannot be reached.
"""

import ctypes
import os
import signal
import sys
import time

keep_gib = float(sys.argv[1])
device = int(sys.argv[2]) if len(sys.argv) > 2 else 0

# Die with the parent (the harness), so a crashed harness never leaves VRAM held.
try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        sys.exit(3)
except OSError:
    pass

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

import torch  # noqa: E402  (after the signal setup: importing torch takes seconds)

torch.cuda.set_device(device)
torch.cuda.init()
keep = int(keep_gib * (1 << 30))
MIB = 1 << 20
chunks = []
held = 0
# Allocate in large blocks first, then smaller ones, re-reading the driver's free count each time:
# the caching allocator rounds sizes and the context itself takes some memory.
for step in (4096 * MIB, 1024 * MIB, 256 * MIB, 64 * MIB, 2 * MIB):
    while True:
        free, total = torch.cuda.mem_get_info(device)
        if free - keep < step:
            break
        chunks.append(torch.empty(step, dtype=torch.uint8, device=f"cuda:{device}"))
        held += step
free, total = torch.cuda.mem_get_info(device)
if free > keep + 64 * MIB or free < keep - 64 * MIB:
    print(f"ERROR free={free} wanted={keep} total={total}", flush=True)
    sys.exit(2)
print(f"READY free={free} held={held} total={total}", flush=True)
while not stop:
    time.sleep(0.2)
chunks.clear()
torch.cuda.empty_cache()
