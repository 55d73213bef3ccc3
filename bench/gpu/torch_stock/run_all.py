"""The PyTorch stock-script benchmark of issue 17, in one command on the GPU machine:

  OUT=/some/dir python3 bench/gpu/torch_stock/run_all.py [--cases bf16,fp32] [--budget-s 430]

Next GPU session (the 14B-class bf16 case; one H100, one command of at most 10 minutes). Here,
where git and node are:
  bash bench/gpu/torch_stock/prepare.sh        # bench/.pack/shim-src: the committed shim sources
then on the device machine, with bench/.pack carried (run's carry: ["bench/.pack"], timeout 600):
  OUT=$OUT python3 bench/gpu/torch_stock/run_all.py --cases bf16-14b --budget-s 480

Cases (cases.py; --cases takes a comma list of them, default "bf16,fp32"):
  bf16      Llama-8B shape at bf16 (16.06 GB)
  fp32      the same checkpoint loaded as fp32 (32.1 GB)
  bf16-14b  the Qwen2.5-14B layer shape as a Llama at bf16 (29.54 GB; torch_models.py "llama-14b"),
            the issue's larger case; its own checkpoint, maps (llama14b-bf16-*), references, logits
Needs bench/.pack/shim-src (prepare.sh; carried) and the maps in maps/ (made with make_maps.ts where
node is; committed). Steps, each time-boxed (cases.py: `limit` kills it, `need` is the least time
left for it to start) and recorded even when one fails; the ones the issue's targets need first:
  1. build the shim; write each needed checkpoint (deterministic random weights, bf16) to /dev/shm
     when it has room, else to --work
  2. measure zero-copy and VRAM read rates with PyTorch under the shim (no ballast)
  3. ballast: 12 GiB free; per case: the stock script under the shim with what `spillway run --`
     sets (the access-aware map, TORCH_CUDNN_SDPA_DEPRIORITIZED=1), the same script under
     accelerate's device_map offload, spillway's transformers recipe (static cache + CUDA graph)
  4. ballast off: the stock script all in VRAM per case (the ceiling, the reference logits)
  5. extras while time lasts, ballast again: the stock script under the bare shim (no map, no env:
     what users got before) and with the first-layers-first map (bf16, bf16-14b)
Writes $OUT/results.json, $OUT/results.md (summarize.py) and $OUT/logs.tar.gz. Never uses managed
memory; the ballast is plain cudaMalloc through torch and is killed by pid.

Time per step, --cases bf16-14b (estimated from the 8B run of bench/results/2026-12-06-torch:
checkpoint 30 s, bf16 stock steps 25-33 s, fp32 under the shim 54 s with 20.8 GB spilled, fp32
accelerate 57 s at 4.2 s per forward; the 14B spills 18.4 GB, accelerate offloads ~19.5 GB):
  shim build + torch probe ~15 s; checkpoint-llama-14b ~45 s (limit 180; +~20 s on disk);
  rates ~7 s; ballast ~6 s; bf16-14b-stock-spillway ~45 s (limit 150; gen 8 at ~2.5 t/s);
  bf16-14b-stock-accelerate ~55 s (limit 150; gen 2: 7 forwards at ~3.7-4.4 s each);
  bf16-14b-recipe ~45 s (limit 150; 16 tokens); bf16-14b-all-vram ~35 s (limit 120);
  extras (ballast again ~6 s): bf16-14b-stock-bare-shim ~45 s, bf16-14b-stock-spillway-first ~45 s;
  logits check, summary, tarball ~10 s. About 360 s in all; --budget-s 480 leaves room.
"""

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
from cases import CASES, CHECKPOINTS, case_of, parse_cases  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--budget-s", type=float, default=430)
p.add_argument("--keep-gib", type=float, default=12)
p.add_argument("--work", default="/tmp/torch-stock")
p.add_argument("--cases", default="bf16,fp32", help=f"comma list of: {', '.join(CASES)}")
a = p.parse_args()
try:
    SEL = parse_cases(a.cases)
except ValueError as e:
    p.error(f"--cases: {e}")
START = time.time()
DEADLINE = START + a.budget_s
TAIL_S = 20  # after the steps: stop the ballast, compare logits, summarize, tar the logs
STEP_DEADLINE = DEADLINE - TAIL_S
OUT = os.environ.get("OUT") or os.path.join(a.work, "out")
LOGS = os.path.join(a.work, "logs")
os.makedirs(OUT, exist_ok=True)
shutil.rmtree(LOGS, ignore_errors=True)  # this run's logs only (a warm machine may hold an earlier run's)
os.makedirs(LOGS, exist_ok=True)
for _n in os.listdir(a.work):  # nor its logits: a check compares this run's files
    if _n.endswith(".pt") and _n.startswith(("ref-", "logits-")):
        os.remove(os.path.join(a.work, _n))
R = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cases": SEL, "budget_s": a.budget_s,
     "steps": {}, "notes": [], "checkpoints": {}}


def log(msg):
    print(f"[{time.time() - START:6.1f}s] {msg}", flush=True)


def save():
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(R, f, indent=1)


def complete(d):
    """A whole checkpoint (make_checkpoint.py renames its directory into place when done)."""
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return "config.json" in names and any(n.endswith(".safetensors") for n in names)


def ckpt_dir(shape):
    """Where the checkpoint of `shape` is or goes: an existing complete one; else /dev/shm when it has
    room (a container's may be small; tmpfs is RAM), else the work dir."""
    c = CHECKPOINTS[shape]
    shm, work = os.path.join("/dev/shm", c["dirname"]), os.path.join(a.work, c["dirname"])
    for d in (shm, work):
        if complete(d):
            return d
    try:
        st = os.statvfs("/dev/shm")
        room = st.f_bavail * st.f_frsize
    except OSError:
        room = 0
    return shm if room > c["shm_min"] else work


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


def skip(name, why):
    log(f"{name}: skipped ({why})")
    R["steps"][name] = {"status": "skipped", "why": why}
    save()
    return None


def run(name, argv, env=None, limit=120, need=20, expect_result=True):
    """Run one step; its output to logs/<name>.log; RESULT/RATES json and the shim's stats at LOADED.
    Starts only with at least `need` seconds left before the steps' deadline; killed after `limit`
    (or at that deadline), then recorded as failed with killed_at_limit."""
    left = STEP_DEADLINE - time.time()
    if left < need:
        return skip(name, f"no time left: {max(0.0, left):.0f}s of the {need}s it needs")
    limit = max(1.0, min(limit, left))
    log(f"{name}: start (limit {limit:.0f}s)")
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    t0 = time.time()
    rec = {"argv": argv, "env": {k: v for k, v in (env or {}).items()}, "status": "?", "limit_s": round(limit)}
    killed = []

    def kill():
        killed.append(True)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    with open(os.path.join(LOGS, f"{name}.log"), "w") as logf:
        proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, start_new_session=True)
        timer = threading.Timer(limit, kill)
        timer.start()
        try:
            for line in proc.stdout:
                logf.write(line)
                try:
                    if line.startswith("LOADED"):
                        rec["shim_loaded"] = read_stats(proc.pid)
                    elif line.startswith(("RESULT ", "RATES ")):
                        rec["result"] = json.loads(line.split(" ", 1)[1])
                    elif line.startswith("{") and '"runtime"' in line:
                        rec["result"] = json.loads(line)
                except ValueError as e:
                    rec["parse_error"] = f"{type(e).__name__}: {e}"
            rc = proc.wait()
        finally:
            timer.cancel()
    ok = rc == 0 and ("result" in rec or not expect_result) and not killed
    rec.update(rc=rc, seconds=round(time.time() - t0, 1), status="ok" if ok else "failed")
    if killed:
        rec["killed_at_limit"] = True
    if rec["status"] != "ok":
        with open(os.path.join(LOGS, f"{name}.log")) as f:
            rec["tail"] = f.read()[-1500:]
    log(f"{name}: {rec['status']} rc={rc} in {rec['seconds']}s" + (" (killed at its time limit)" if killed else ""))
    R["steps"][name] = rec
    save()
    return rec


PY = sys.executable
SHIM_SRC = os.path.join(ROOT, "bench", ".pack", "shim-src", "shim")
SHIM = os.path.join(SHIM_SRC, "build", "libspillway_shim.so")
STOCK = os.path.join(HERE, "stock_script.py")
RECIPE = os.path.join(ROOT, "engine", "runtimes", "python", "spillway_transformers.py")
MAPS = os.path.join(HERE, "maps")

# 1. shim, torch facts, checkpoints
b = subprocess.run(["make", "-C", SHIM_SRC, "-j", "8"], capture_output=True, text=True)
R["shim_build"] = {"rc": b.returncode, "tail": (b.stdout + b.stderr)[-800:]}
log(f"shim build rc={b.returncode}; cases {','.join(SEL)}")
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
try:
    st = os.statvfs("/dev/shm")
    R["machine"]["dev_shm_free"] = st.f_bavail * st.f_frsize
except OSError:
    pass
log(f"machine: {R['machine']}")
save()
ENV_FLAG = {"TORCH_CUDNN_SDPA_DEPRIORITIZED": "1"} if R["machine"].get("deprioritized_env_in_lib") else {}
if not ENV_FLAG:
    R["notes"].append("TORCH_CUDNN_SDPA_DEPRIORITIZED not found in this torch's libtorch_cuda: not set")

CKPT = {}  # shape -> directory, for the shapes whose checkpoint is complete
for shape in dict.fromkeys(CASES[c]["shape"] for c in SEL):
    c = CHECKPOINTS[shape]
    d = ckpt_dir(shape)
    if not complete(d):
        run(c["step"], [PY, os.path.join(HERE, "make_checkpoint.py"), "--shape", shape, "--out", d],
            limit=c["limit"], need=c["need"])
        if not complete(d) and (R["steps"].get(c["step"]) or {}).get("status") == "ok":
            R["steps"][c["step"]]["status"] = "failed"
            R["steps"][c["step"]]["why"] = f"exited 0 but {d} is not a complete checkpoint"
            save()
    R["checkpoints"][shape] = {"dir": d, "complete": complete(d)}
    if complete(d):
        CKPT[shape] = d
    save()


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


def ref_path(case):
    return os.path.join(a.work, f"ref-{case}.pt")


def logits_path(name):
    return os.path.join(a.work, f"logits-{name}.pt")


def step(case, method, kind="core"):
    """Run method (all-vram, stock-spillway, stock-accelerate, recipe, stock-bare-shim,
    stock-spillway-first) of a case, with the case's checkpoint, dtype, map and limits."""
    cs = CASES[case]
    name = f"{case}-{method}"
    ckpt = CKPT.get(cs["shape"])
    if ckpt is None:
        return skip(name, f"no {cs['shape']} checkpoint")
    limit = cs["limit"]["extra" if kind == "extra" else method]
    need = cs["need"]["extra" if kind == "extra" else method]
    stock_argv = [PY, STOCK, "--model", ckpt, "--dtype", cs["dtype"]]
    if method == "all-vram":
        return run(name, stock_argv + ["--gen", str(cs["gen"]), "--save-logits", ref_path(case)],
                   env=dict(ENV_FLAG), limit=limit, need=need)
    if method == "stock-spillway":
        env = shim_env(f"{cs['map']}-last")
    elif method == "stock-spillway-first":
        env = shim_env(f"{cs['map']}-first")
    elif method == "stock-bare-shim":
        env = shim_env(None, flag=False)  # what users got before: allocation order, cuDNN attention first
    elif method == "stock-accelerate":
        gpu_gib = max(0.0, FREE_BYTES / 2**30 - 2.5)
        return run(name, stock_argv + ["--gen", str(cs["acc_gen"]), "--device-map", "auto", "--gpu-gib", f"{gpu_gib:.2f}",
                                       "--save-logits", logits_path(name)],
                   env=dict(ENV_FLAG), limit=limit, need=need)
    elif method == "recipe":
        return run(name, [PY, RECIPE, "--model", ckpt, "--device", "cuda", "--dtype", cs["dtype"], "--prompt-tokens", "512",
                          "--gen-tokens", str(cs["gen"] * 2), "--save-logits", logits_path(name)],
                   env=shim_env(f"{cs['map']}-last", flag=False), limit=limit, need=need)
    else:
        raise ValueError(method)
    return run(name, stock_argv + ["--gen", str(cs["gen"]), "--save-logits", logits_path(name)], env=env,
               limit=limit, need=need)


class Ballast:
    """bench/gpu/ballast.py: holds all VRAM but --keep-gib until stopped."""

    def __init__(self):
        self.proc = None

    def start(self, key):
        self.proc = subprocess.Popen([PY, os.path.join(ROOT, "bench", "gpu", "ballast.py"), str(a.keep_gib)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = None
        t_b = time.time()
        while time.time() - t_b < 60:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(("READY", "ERROR")):
                ready = line.strip()
                break
        R[key] = ready
        log(f"ballast: {ready}")
        save()
        return int(ready.split("free=")[1].split()[0]) if ready and ready.startswith("READY") else 0

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        log("ballast stopped")


ballast = Ballast()
FREE_BYTES = 0
try:
    # 3. ballast, then what the ratios need: stock under spillway, stock under accelerate, the recipe
    FREE_BYTES = ballast.start("ballast")
    if FREE_BYTES:
        for case in SEL:
            for method in ("stock-spillway", "stock-accelerate", "recipe"):
                step(case, method)
    else:
        for case in SEL:
            for method in ("stock-spillway", "stock-accelerate", "recipe"):
                skip(f"{case}-{method}", "ballast not ready")
    ballast.stop()
    # 4. all in VRAM (the ceiling and the reference logits), same attention environment as the shim runs
    for case in SEL:
        step(case, "all-vram")
    # 5. extras while time lasts, under the ballast again
    extras = [(case, m) for case in SEL for m in CASES[case]["extras"]]
    if extras:
        least = min(CASES[c]["need"]["extra"] for c, _ in extras)
        if STEP_DEADLINE - time.time() >= least + 10 and ballast.start("ballast_extras"):
            for case, m in extras:
                step(case, m, kind="extra")
        else:
            for case, m in extras:
                skip(f"{case}-{m}", "no time left (or no ballast) for the extras")
finally:
    ballast.stop()

# Logits against the all-VRAM reference of the same case.
try:
    import torch
    for name, rec in R["steps"].items():
        case = case_of(name)
        lp = logits_path(name)
        if case is None or rec.get("status") != "ok" or not os.path.exists(lp) or not os.path.exists(ref_path(case)):
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
md = os.path.join(OUT, "results.md")
try:
    s = subprocess.run([PY, os.path.join(HERE, "summarize.py"), os.path.join(OUT, "results.json"), md],
                       timeout=30, capture_output=True, text=True)
    print(s.stdout[-6000:], flush=True)
    if s.returncode != 0:
        raise RuntimeError(f"rc {s.returncode}: {s.stderr[-1500:]}")
except Exception as e:
    log(f"summarize failed: {e}")
    with open(md, "w") as f:  # the bare step table, so the run still says what happened
        f.write(f"# PyTorch stock-script benchmark (issue 17), {R['started'][:10]}\n\nsummarize.py failed: {e}\n\n"
                "| step | status | seconds |\n| --- | --- | --- |\n" +
                "".join(f"| {k} | {v.get('status')} | {v.get('seconds', '-')} |\n" for k, v in R["steps"].items()))
try:
    with tarfile.open(os.path.join(OUT, "logs.tar.gz"), "w:gz") as t:
        t.add(LOGS, arcname="logs")
except Exception as e:
    log(f"logs.tar.gz failed: {e}")
log("done")
