#!/usr/bin/env python3
"""Where a decode run's GPU time goes, from an Nsight Systems SQLite export (issue 22).

Reads the kernels and memory copies of the last part of the run (the decode window: from the
end of the last large host-to-device copy, which is the model load, plus a skip), and prints one
JSON object: the window's length, how long the GPU was busy (union of kernels and copies), the
host-to-device copies (count, bytes, summed time, GB/s while copying) and the kernels grouped by
name (count, summed time), and the host side of the same window from the CUDA API calls (summed
time per call name; `hostSyncMs`: time the host spent waiting for the GPU in synchronize calls;
`hostApiMs`: all CUDA calls, so the window less it is the host's own work, the CPU's compute). With
the tokens/s of the same run, the per-token figures follow.

Usage: trace_summary.py TRACE.sqlite [--skip-s 0.5] [--load-copy-mb 32]
"""
import argparse
import json
import sqlite3
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sqlite")
    ap.add_argument("--skip-s", type=float, default=0.5, help="seconds skipped after the model load")
    ap.add_argument("--load-copy-mb", type=float, default=32.0, help="a copy this large or larger is the model load")
    a = ap.parse_args()
    db = sqlite3.connect(a.sqlite)
    names = dict(db.execute("SELECT id, value FROM StringIds"))
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "CUPTI_ACTIVITY_KIND_KERNEL" not in tables:
        print(json.dumps({"error": "no kernels in the trace"}))
        return 1
    kernels = db.execute("SELECT start, end, shortName FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchall()
    copies = db.execute("SELECT start, end, bytes, copyKind FROM CUPTI_ACTIVITY_KIND_MEMCPY").fetchall() \
        if "CUPTI_ACTIVITY_KIND_MEMCPY" in tables else []
    # copyKind 1 is host to device in CUPTI's enum.
    load_end = max((e for s, e, b, k in copies if k == 1 and b >= a.load_copy_mb * 2**20), default=0)
    t0 = load_end + int(a.skip_s * 1e9)
    t1 = max(e for s, e, n in kernels)
    if t1 <= t0:
        print(json.dumps({"error": "no activity after the model load"}))
        return 1
    win_k = [(s, e, names.get(n, str(n))) for s, e, n in kernels if s >= t0]
    win_c = [(s, e, b, k) for s, e, b, k in copies if s >= t0]
    # The GPU's busy time: union of kernel and copy intervals.
    spans = sorted([(s, e) for s, e, _ in win_k] + [(s, e) for s, e, _, _ in win_c])
    busy = 0
    cur_s, cur_e = None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    kernel_busy = sum(e - s for s, e, _ in win_k)
    by_name: dict = {}
    for s, e, n in win_k:
        d = by_name.setdefault(n, {"count": 0, "ms": 0.0})
        d["count"] += 1
        d["ms"] += (e - s) / 1e6
    top = sorted(by_name.items(), key=lambda kv: -kv[1]["ms"])[:12]
    h2d = [(s, e, b) for s, e, b, k in win_c if k == 1]
    h2d_bytes = sum(b for _, _, b in h2d)
    h2d_ns = sum(e - s for s, e, _ in h2d)
    api = {}
    if "CUPTI_ACTIVITY_KIND_RUNTIME" in tables:
        for s, e, n in db.execute("SELECT start, end, nameId FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE start >= ? AND start <= ?", (t0, t1)):
            # nsys names runtime calls with a version suffix (cudaMemcpyAsync_v3020): one name per call.
            name = names.get(n, str(n)).split("_v")[0]
            d = api.setdefault(name, {"count": 0, "ms": 0.0})
            d["count"] += 1
            d["ms"] += (min(e, t1) - s) / 1e6
    out = {
        "windowMs": (t1 - t0) / 1e6,
        "gpuBusyMs": busy / 1e6,
        "kernelMs": kernel_busy / 1e6,
        "kernels": len(win_k),
        "h2dCopies": len(h2d),
        "h2dBytes": h2d_bytes,
        "h2dMs": h2d_ns / 1e6,
        "h2dGBpsWhileCopying": (h2d_bytes / h2d_ns) if h2d_ns else None,
        "otherCopies": len(win_c) - len(h2d),
        "hostApiMs": round(sum(d["ms"] for d in api.values()), 3) if api else None,
        "hostSyncMs": round(sum(d["ms"] for n, d in api.items() if "Synchronize" in n), 3) if api else None,
        "topApiCalls": [{"name": n, "count": d["count"], "ms": round(d["ms"], 3)}
                        for n, d in sorted(api.items(), key=lambda kv: -kv[1]["ms"])[:10]],
        "topKernels": [{"name": n, **{k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}} for n, d in top],
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
