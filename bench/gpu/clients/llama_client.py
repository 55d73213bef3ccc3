"""llama.cpp with all layers on the GPU (-ngl 99): its weights through cudaMalloc, its compute buffers
through its own VMM pool (cuMemCreate/cuMemMap, GGML_CUDA_NO_VMM off). llama-perplexity over a fixed
text: the per-chunk perplexities it prints are the checksum (the same kernels on the same GPU give the
same digits, whichever memory the weights live in).
Usage: python3 llama_client.py   (environment: CLIENTS_LLAMA_BIN, the folder of llama-perplexity;
CLIENTS_LLAMA_MODEL, a GGUF larger than the free VRAM)"""

import json
import os
import re
import subprocess
import threading
import time

START = time.perf_counter()
from _common import parse_stats, report  # noqa: E402

BIN = os.environ["CLIENTS_LLAMA_BIN"]
MODEL = os.environ["CLIENTS_LLAMA_MODEL"]
WORK = os.environ.get("CLIENTS_WORK", "/tmp/spillway-clients")


def text_file():
    """Four 512-token chunks of deterministic words (a synthetic model: any text does)."""
    path = os.path.join(WORK, "llama-client.txt")
    words = [f"w{(i * 7919) % 1009}" for i in range(12000)]
    with open(path, "w") as f:
        f.write(" ".join(words))
    return path


class StatsWatcher(threading.Thread):
    """Reads the child's shim record (SPILLWAY_STATS_DIR/spillway-UID/PID-*) until it exits: the record
    is removed at exit, so the last read holds the peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.last, self.stop = pid, None, False

    def run(self):
        d = os.path.join(os.environ.get("SPILLWAY_STATS_DIR", "/nonexistent"), f"spillway-{os.getuid()}")
        while not self.stop:
            try:
                for name in os.listdir(d):
                    if name.startswith(f"{self.pid}-"):
                        with open(os.path.join(d, name), "rb") as f:
                            raw = f.read(4096)
                        if len(raw) >= 232:
                            self.last = parse_stats(raw)
            except OSError:
                pass
            time.sleep(0.2)


args = [os.path.join(BIN, "llama-perplexity"), "-m", MODEL, "-f", text_file(), "-ngl", "99", "-c", "512",
        "--chunks", "4", "-b", "512", "-t", "16"]
t0 = time.perf_counter()
child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
watch = StatsWatcher(child.pid)
watch.start()
out, _ = child.communicate()
wall = time.perf_counter() - t0
watch.stop = True
watch.join()
print(out[-6000:])
if child.returncode != 0:
    raise SystemExit(f"llama-perplexity exited {child.returncode}")
# "[1]12.3456,[2]..." : the running perplexity after each chunk.
chunks = re.findall(r"\[(\d+)\]([0-9.]+|nan|inf)", out)
if not chunks:
    raise SystemExit("no perplexity in llama-perplexity's output")
compute = re.search(r"perplexity: ([0-9.]+) seconds per pass", out)
report("llama-vmm", ",".join(v for _, v in chunks), float(compute.group(1)) * len(chunks) if compute else wall, START,
       {"shim": watch.last, "working_set_gib": round(os.path.getsize(MODEL) / (1 << 30), 2), "llama_wall_s": round(wall, 2),
        "args": args[1:]})
