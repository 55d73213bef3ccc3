"""Shared by the client scripts: the one computation every client makes (so every checksum is the
same number), timing, and the shim's own counters read in-process.

The computation over K chunks of N int32 each (K GiB):
    x_i[j] = ((j mod P) * 37 + 11 i) mod P          for i in 0..K-1
    x_i    = (x_i + x_{i-1}) mod P                   for i in 1..K-1, in order
    checksum = sum over i, j of x_i[j]              (exact, in int64)
Integer arithmetic only, so a correct run gives the same checksum on any allocator and placement.
"""

import ctypes
import json
import os
import sys
import time

P = 1000003
N = 1 << 28  # int32 elements per chunk: 1 GiB


def chunks_from_argv():
    """Working set in GiB (the number of chunks), from argv[1]."""
    return int(sys.argv[1]) if len(sys.argv) > 1 else 21


def expected_checksum(k):
    """The checksum computed on the CPU with numpy, chunk by chunk (for small k in dry runs)."""
    import numpy as np

    j = (np.arange(N, dtype=np.int64) % P) * 37
    prev = None
    total = 0
    for i in range(k):
        x = (j + 11 * i) % P
        if prev is not None:
            x = (x + prev) % P
        total += int(x.sum())
        prev = x
    return total


def shim_stats():
    """The shim's counters if it is preloaded: VRAM and host bytes now and at peak."""
    try:
        fn = ctypes.CDLL(None).spillway_shim_stats
    except (AttributeError, OSError):
        return None
    buf = ctypes.create_string_buffer(4096)
    fn.restype = ctypes.c_int
    if fn(buf, ctypes.c_size_t(4096)) <= 0:
        return None
    return parse_stats(buf.raw)


def parse_stats(raw):
    """A shim stats record (the control API's copy, or the file in SPILLWAY_STATS_DIR) as a dict."""

    def u64(off):
        return int.from_bytes(raw[off:off + 8], "little")

    tiers = [{"bytes": u64(96 + 32 * t), "peak": u64(96 + 32 * t + 16)} for t in range(4)]
    return {
        "vram_budget": u64(48),
        "host_limit": u64(72),
        "vram_peak": tiers[0]["peak"],
        "host_peak": sum(t["peak"] for t in tiers[1:]),
        "tiers": tiers,
        "allocs": u64(224),
    }


def timed(compute, k):
    """compute(2) as a warm-up (kernels compiled and loaded), then compute(k) CLIENTS_REPEAT times (3):
    the checksum (the same every time, or SystemExit) and the fastest run's seconds, so that the shim's
    overhead is not lost in the first run's pool growth and clock ramp."""
    compute(2)
    sums, times = [], []
    for _ in range(int(os.environ.get("CLIENTS_REPEAT", "3"))):
        t = Timer()
        sums.append(compute(k))
        times.append(t.seconds())
    if len(set(sums)) != 1:
        raise SystemExit(f"checksums differ between repetitions: {sums}")
    return sums[0], min(times), times


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def seconds(self):
        return time.perf_counter() - self.t0


def report(client, checksum, compute_s, start, extra=None, times=None):
    """One line the runner reads: RESULT {...}."""
    out = {
        "compute_runs_s": times and [round(t, 4) for t in times],
        "client": client,
        "checksum": str(checksum),
        "compute_s": round(compute_s, 4),
        "process_s": round(time.perf_counter() - start, 3),
        "shim": shim_stats(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("PYTORCH_CUDA_ALLOC_CONF", "XLA_", "CUPY_"))},
    }
    if extra:
        out.update(extra)
    print("RESULT " + json.dumps(out), flush=True)
