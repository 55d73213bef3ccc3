"""Turn the runner's runs.jsonl into results.json and results.md (bench/gpu/clients/run.sh calls it).
Usage: python3 results.py WORK OUTDIR GIB KEEP_GIB"""

import json
import sys

work, outdir, gib, keep = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
runs = [json.loads(line) for line in open(f"{work}/runs.jsonl") if line.strip()]
try:
    cpu = json.load(open(f"{work}/cpu.json"))
except (OSError, ValueError):
    cpu = None
try:
    machine = json.load(open(f"{work}/machine.json"))
except (OSError, ValueError):
    machine = None
GiB = 1 << 30


def get(client, phase):
    for r in runs:
        if r["client"] == client and r["phase"] == phase:
            return r
    return None


def checksum(r):
    return r and r.get("rc") == 0 and r.get("result") and r["result"].get("checksum")


rows = []
for client in dict.fromkeys(r["client"] for r in runs):
    bare, spill, fit = get(client, "bare"), get(client, "spill"), get(client, "fit")
    ref = checksum(bare)
    # A client may name its own working set (llama.cpp: the model file's size).
    ws = next((r["result"]["working_set_gib"] for r in (bare, spill, fit) if r and r.get("result") and r["result"].get("working_set_gib")), gib)
    row = {
        "client": client,
        "working_set_gib": ws,
        "free_vram_gib": keep,
        "ratio": round(ws / keep, 2),
        "reference_checksum": ref,
        "cpu_checksum": cpu and cpu["checksum"],
        "reference_matches_cpu": bool(ref and cpu and ref == cpu["checksum"]),
        "spill_checksum": checksum(spill),
        "checksum_match": bool(ref and checksum(spill) == ref),
        "pass": bool(ref and checksum(spill) == ref),
        "bare_compute_s": bare and bare.get("result") and bare["result"]["compute_s"],
        "bare_wall_s": bare and bare.get("wall_s"),
        "spill_compute_s": spill and spill.get("result") and spill["result"]["compute_s"],
        "spill_wall_s": spill and spill.get("wall_s"),
        "host_bytes_placed": spill and spill.get("result") and (spill["result"].get("shim") or {}).get("host_peak"),
        "fit_checksum_match": bool(ref and checksum(fit) == ref),
        "fit_compute_s": fit and fit.get("result") and fit["result"]["compute_s"],
        "fit_host_bytes": fit and fit.get("result") and (fit["result"].get("shim") or {}).get("host_peak"),
        "spill_rc": spill and spill.get("rc"),
        "spill_tail": None if checksum(spill) else spill and (spill.get("tail") or spill.get("skipped")),
    }
    if row["bare_compute_s"] and row["fit_compute_s"]:
        row["fit_overhead_pct"] = round(100 * (row["fit_compute_s"] / row["bare_compute_s"] - 1), 2)
    rows.append(row)

json.dump({"machine": machine, "cpu": cpu, "clients": rows, "runs": runs}, open(f"{outdir}/results.json", "w"), indent=1)


def f(x, nd=2):
    return "-" if x is None or x is False else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


lines = [
    f"# Real clients under the shim: {gib} GiB working set at {keep:g} GiB free VRAM ({gib / keep:.2f}x)",
    "",
    f"Machine: {machine and machine.get('gpu')}; versions: {machine and json.dumps(machine.get('versions'))}",
    f"CPU (numpy) checksum: {cpu and cpu['checksum']}",
    "",
    "Compute seconds: the fastest of CLIENTS_REPEAT runs after a warm-up (llama-vmm: llama-perplexity's seconds per pass x chunks).",
    "",
    "| client | working set GiB (x free) | pass | checksum = bare | bare compute s | spill compute s | fit compute s | bare wall s | spill wall s | host GiB placed | fit overhead % (compute) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]
for r in rows:
    hb = r["host_bytes_placed"]
    lines.append(
        f"| {r['client']} | {f(r['working_set_gib'])} ({r['ratio']:.2f}x) | {'pass' if r['pass'] else 'FAIL'} | {r['checksum_match']} | {f(r['bare_compute_s'])} | "
        f"{f(r['spill_compute_s'])} | {f(r['fit_compute_s'])} | {f(r['bare_wall_s'])} | {f(r['spill_wall_s'])} | "
        f"{f(hb / GiB if hb else None)} | {f(r.get('fit_overhead_pct'))} |"
    )
for r in rows:
    if not r["pass"]:
        lines += ["", f"## {r['client']}: spill run rc {r['spill_rc']}", "", "```", str(r["spill_tail"])[-1500:], "```"]
open(f"{outdir}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
