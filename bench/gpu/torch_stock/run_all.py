"""The PyTorch stock-script benchmark of issue 17, in one command on the GPU machine:

  OUT=/some/dir python3 bench/gpu/torch_stock/run_all.py [--budget-s 430]

Needs bench/.pack/shim-src (bench/gpu/torch_stock/prepare.sh; carried) and the maps in maps/ (made
with make_maps.ts where node is). Steps, each time-boxed and recorded even when one fails:
  1. build the shim; write a Llama-8B-shape checkpoint (deterministic random weights) to /dev/shm
  2. measure zero-copy and VRAM read rates with PyTorch under the shim (no ballast)
  3. all in VRAM (no ballast): the stock script at bf16 and fp32 (reference logits, the ceiling)
  4. ballast: 12 GiB free; then per case (bf16, fp32): the stock script under the shim with what
     `spillway run --` sets (the access-aware map, TORCH_CUDNN_SDPA_DEPRIORITIZED=1), the same script
     under accelerate's device_map offload, spillway's transformers recipe (static cache + CUDA graph)
  5. extras while time lasts: the stock script under the bare shim (no map, no env: what users got
     before) and with the first-layers-first map
Writes $OUT/results.json, $OUT/results.md and $OUT/logs.tar.gz. Never uses managed memory; the
ballast is plain cudaMalloc through torch and is killed by pid at the end.
"""

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
p = argparse.ArgumentParser()
p.add_argument("--budget-s", type=float, default=430)
p.add_argument("--keep-gib", type=float, default=12)
p.add_argument("--work", default="/tmp/torch-stock")
a = p.parse_args()
START = time.time()
DEADLINE = START + a.budget_s
OUT = os.environ.get("OUT") or os.path.join(a.work, "out")
LOGS = os.path.join(a.work, "logs")
os.makedirs(OUT, exist_ok=True)
os.makedirs(LOGS, exist_ok=True)
# /dev/shm when it has room for the 16 GB checkpoint (a container's may be small), else the work dir.
_shm = os.statvfs("/dev/shm")
CKPT = "/dev/shm/spillway-llama-8b" if _shm.f_bavail * _shm.f_frsize > 40e9 else os.path.join(a.work, "llama-8b")
R = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}, "notes": []}


def log(msg):
    print(f"[{time.time() - START:6.1f}s] {msg}", flush=True)


def save():
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(R, f, indent=1)


def read_stats(pid):
    """Shim record of a process (layout shim/include/spillway_stats.h v1): VRAM/host bytes now and peak.
    Records are <SPILLWAY_STATS_DIR or /dev/shm>/spillway-<euid>/<pid>-<start ticks>-<pid namespace>."""
    d = os.path.join(os.environ.get("SPILLWAY_STATS_DIR") or "/dev/shm", f"spillway-{os.geteuid()}")
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks
        name = next(n for n in os.listdir(d) if n.startswith(f"{pid}-{start}-"))
        fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(96 + 4 * 32)
    except (OSError, IndexError, StopIteration):
        return None
    if len(raw) < 224 or struct.unpack_from("<Q", raw, 0)[0] != 0x5457534C4C495053:
        return None
    tiers = [struct.unpack_from("<QQQQ", raw, 96 + 32 * i) for i in range(4)]
    return {"vram": tiers[0][0], "host": sum(t[0] for t in tiers[1:]), "host_peak": sum(t[2] for t in tiers[1:]),
            "budget": struct.unpack_from("<Q", raw, 48)[0]}


def run(name, argv, env=None, limit=120, need=20, expect_result=True):
    """Run one step; its output to logs/<name>.log; RESULT/RATES json and the shim's stats at LOADED."""
    left = DEADLINE - time.time()
    if left < need:
        log(f"{name}: skipped (no time left)")
        R["steps"][name] = {"status": "skipped"}
        save()
        return None
    limit = min(limit, left - 5)
    log(f"{name}: start (limit {limit:.0f}s)")
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    t0 = time.time()
    rec = {"argv": argv, "env": {k: v for k, v in (env or {}).items()}, "status": "?"}
    with open(os.path.join(LOGS, f"{name}.log"), "w") as logf:
        proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, start_new_session=True)
        timer = threading.Timer(limit, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            for line in proc.stdout:
                logf.write(line)
                if line.startswith("LOADED"):
                    rec["shim_loaded"] = read_stats(proc.pid)
                elif line.startswith(("RESULT ", "RATES ")):
                    rec["result"] = json.loads(line.split(" ", 1)[1])
                elif line.startswith("{") and '"runtime"' in line:
                    rec["result"] = json.loads(line)
            rc = proc.wait()
        finally:
            timer.cancel()
    ok = rc == 0 and ("result" in rec or not expect_result)
    rec.update(rc=rc, seconds=round(time.time() - t0, 1), status="ok" if ok else "failed")
    if rec["status"] != "ok":
        with open(os.path.join(LOGS, f"{name}.log")) as f:
            rec["tail"] = f.read()[-1500:]
    log(f"{name}: {rec['status']} rc={rc} in {rec['seconds']}s")
    R["steps"][name] = rec
    save()
    return rec


PY = sys.executable
SHIM_SRC = os.path.join(ROOT, "bench", ".pack", "shim-src", "shim")
SHIM = os.path.join(SHIM_SRC, "build", "libspillway_shim.so")
STOCK = os.path.join(HERE, "stock_script.py")
RECIPE = os.path.join(ROOT, "engine", "runtimes", "python", "spillway_transformers.py")
MAPS = os.path.join(HERE, "maps")

# 1. shim, torch facts, checkpoint
b = subprocess.run(["make", "-C", SHIM_SRC, "-j", "8"], capture_output=True, text=True)
R["shim_build"] = {"rc": b.returncode, "tail": (b.stdout + b.stderr)[-800:]}
log(f"shim build rc={b.returncode}")
probe = subprocess.run([PY, "-c", """
import json, os, glob, torch, transformers
lib = glob.glob(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libtorch_cuda*.so'))
found = any(b'TORCH_CUDNN_SDPA_DEPRIORITIZED' in open(p, 'rb').read() for p in lib)
print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__,
  'gpu': torch.cuda.get_device_name(0), 'cudnn': torch.backends.cudnn.version(), 'deprioritized_env_in_lib': found,
  'free_total': torch.cuda.mem_get_info()}))
"""], capture_output=True, text=True)
try:
    R["machine"] = json.loads(probe.stdout.strip().splitlines()[-1])
except Exception:
    R["machine"] = {"error": (probe.stdout + probe.stderr)[-800:]}
log(f"machine: {R['machine']}")
save()
ENV_FLAG = {"TORCH_CUDNN_SDPA_DEPRIORITIZED": "1"} if R["machine"].get("deprioritized_env_in_lib") else {}
if not ENV_FLAG:
    R["notes"].append("TORCH_CUDNN_SDPA_DEPRIORITIZED not found in this torch's libtorch_cuda: not set")
if not os.path.exists(os.path.join(CKPT, "config.json")):
    run("checkpoint", [PY, os.path.join(HERE, "make_checkpoint.py"), "--shape", "llama-8b", "--out", CKPT], limit=90,
        expect_result=False)


def shim_env(map_name=None, flag=True):
    e = {"LD_PRELOAD": SHIM, "SPILLWAY_RESERVE": "1G", "SPILLWAY_MIN_SPILL": "32M", "SPILLWAY_BACKING": "auto",
         "SPILLWAY_REPORT": "vram+host"}
    if map_name:
        e["SPILLWAY_PLACEMENT"] = os.path.join(MAPS, f"{map_name}.map")
    if flag:
        e.update(ENV_FLAG)
    return e


# 2. rates (no ballast)
run("rates", [PY, os.path.join(HERE, "pcie_rate.py")],
    env={**shim_env(), "SPILLWAY_PLACEMENT_RULES": f"size={4 << 30} host"}, limit=40)

CASES = [("bf16", "bfloat16", 16, 4), ("fp32", "float32", 8, 2)]


def stock(case, dtype, gen, extra_args=(), env=None, name=None, save_ref=None, limit=100):
    argv = [PY, STOCK, "--model", CKPT, "--dtype", dtype, "--gen", str(gen), *extra_args]
    if save_ref:
        argv += ["--save-logits", save_ref]
    return run(name, argv, env=env, limit=limit)


def ref_path(case):
    return os.path.join(a.work, f"ref-{case}.pt")


def logits_path(name):
    return os.path.join(a.work, f"logits-{name}.pt")


# 3. all in VRAM (the ceiling and the reference logits), same attention environment as the shim runs
for case, dtype, gen, _ in CASES:
    stock(case, dtype, gen, env=dict(ENV_FLAG), name=f"{case}-all-vram", save_ref=ref_path(case), limit=90)

# 4. ballast, then the methods
ballast = subprocess.Popen([PY, os.path.join(ROOT, "bench", "gpu", "ballast.py"), str(a.keep_gib)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
ready = None
t_b = time.time()
while time.time() - t_b < 60:
    line = ballast.stdout.readline()
    if not line:
        break
    if line.startswith(("READY", "ERROR")):
        ready = line.strip()
        break
R["ballast"] = ready
log(f"ballast: {ready}")
free_bytes = int(ready.split("free=")[1].split()[0]) if ready and ready.startswith("READY") else 0
try:
    for case, dtype, gen, acc_gen in CASES:
        stock(case, dtype, gen, env=shim_env(f"llama8b-{case}-last"), name=f"{case}-stock-spillway",
              save_ref=logits_path(f"{case}-stock-spillway"), limit=110)
        gpu_gib = max(0.0, free_bytes / 2**30 - 2.5)
        stock(case, dtype, acc_gen, extra_args=["--device-map", "auto", "--gpu-gib", f"{gpu_gib:.2f}"],
              env=dict(ENV_FLAG), name=f"{case}-stock-accelerate", save_ref=logits_path(f"{case}-stock-accelerate"),
              limit=110)
        run(f"{case}-recipe", [PY, RECIPE, "--model", CKPT, "--device", "cuda", "--dtype", dtype, "--prompt-tokens", "512",
                               "--gen-tokens", str(gen * 2), "--save-logits", logits_path(f"{case}-recipe")],
            env=shim_env(f"llama8b-{case}-last", flag=False), limit=110)
        if case == "bf16":
            # What users got before: the bare shim (allocation order, cuDNN attention first).
            stock("bf16", "bfloat16", 16, env=shim_env(None, flag=False), name="bf16-stock-bare-shim",
                  save_ref=logits_path("bf16-stock-bare-shim"), limit=90)
    stock("bf16", "bfloat16", 16, env=shim_env("llama8b-bf16-first"), name="bf16-stock-spillway-first",
          save_ref=logits_path("bf16-stock-spillway-first"), limit=90)
finally:
    ballast.send_signal(signal.SIGTERM)
    try:
        ballast.wait(timeout=20)
    except subprocess.TimeoutExpired:
        ballast.kill()

# Logits against the all-VRAM reference of the same case.
try:
    import torch
    for name, rec in R["steps"].items():
        case = name.split("-")[0]
        lp = logits_path(name)
        if rec.get("status") != "ok" or not os.path.exists(lp) or not os.path.exists(ref_path(case)):
            continue
        got, ref = torch.load(lp), torch.load(ref_path(case))
        rec["check"] = {"exact": bool(torch.equal(got["logits"], ref["logits"])),
                        "max_abs_diff": float((got["logits"] - ref["logits"]).abs().max()),
                        "argmax_agree_pct": float((got["logits"].argmax(-1) == ref["logits"].argmax(-1)).float().mean() * 100),
                        "tokens_identical": got["tokens"][:len(ref["tokens"])] == ref["tokens"][:len(got["tokens"])]}
except Exception as e:
    R["notes"].append(f"logits comparison failed: {type(e).__name__}: {e}")
R["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
R["seconds"] = round(time.time() - START, 1)
save()
try:
    subprocess.run([PY, os.path.join(HERE, "summarize.py"), os.path.join(OUT, "results.json"), os.path.join(OUT, "results.md")],
                   timeout=30)
except Exception as e:
    log(f"summarize failed: {e}")
with tarfile.open(os.path.join(OUT, "logs.tar.gz"), "w:gz") as t:
    t.add(LOGS, arcname="logs")
log("done")
