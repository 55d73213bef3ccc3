"""CuPy with its default memory pool, or cupy.cuda.MemoryAsyncPool (argv[2] == "async").
Usage: python3 cupy_client.py GIB [async]"""

import sys
import time

START = time.perf_counter()
import cupy as cp  # noqa: E402

from _common import N, P, chunks_from_argv, report, timed  # noqa: E402

k = chunks_from_argv()
mode = sys.argv[2] if len(sys.argv) > 2 else "default"
if mode == "async":
    cp.cuda.set_allocator(cp.cuda.MemoryAsyncPool().malloc)


def compute(k):
    """The checksum over k chunks (see _common.py)."""
    base = (cp.arange(N, dtype=cp.int32) % P) * 37
    xs = []
    for i in range(k):
        x = base + cp.int32(11 * i)
        x %= P
        xs.append(x)
    del base
    for i in range(1, k):
        xs[i] += xs[i - 1]
        xs[i] %= P
    checksum = sum(int(x.sum(dtype=cp.int64)) for x in xs)
    cp.cuda.Device().synchronize()
    return checksum


checksum, best_s, times = timed(compute, k)
report("cupy-" + mode, checksum, best_s, START, times=times)
