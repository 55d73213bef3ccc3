"""numba-cuda kernels over device arrays (cuda.device_array).
Usage: python3 numba_client.py GIB"""

import time

START = time.perf_counter()
import numpy as np  # noqa: E402

# numba-cuda 0.30.4 registers an overload for np.row_stack at import; numpy 2.5 (installed beside it
# on the GPU machine) no longer has it, and the import fails without the shim too. Alias it.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack
from numba import cuda  # noqa: E402

from _common import N, P, chunks_from_argv, report, timed  # noqa: E402

k = chunks_from_argv()


@cuda.jit
def fill(x, i):
    j = cuda.grid(1)
    if j < x.size:
        x[j] = ((j % P) * 37 + 11 * i) % P


@cuda.jit
def comb(x, y):
    j = cuda.grid(1)
    if j < x.size:
        x[j] = (x[j] + y[j]) % P


@cuda.jit
def total(x, out):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = np.int64(0)
    for j in range(start, x.size, stride):
        acc += x[j]
    cuda.atomic.add(out, 0, acc)


TPB = 256
blocks = (N + TPB - 1) // TPB


def compute(k):
    """The checksum over k chunks (see _common.py)."""
    xs = []
    for i in range(k):
        x = cuda.device_array(N, dtype=np.int32)
        fill[blocks, TPB](x, i)
        xs.append(x)
    for i in range(1, k):
        comb[blocks, TPB](xs[i], xs[i - 1])
    out = cuda.to_device(np.zeros(1, dtype=np.int64))
    for x in xs:
        total[1024, TPB](x, out)
    checksum = int(out.copy_to_host()[0])
    cuda.synchronize()
    return checksum


checksum, best_s, times = timed(compute, k)
report("numba", checksum, best_s, START, times=times)
