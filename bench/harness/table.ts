/**
 * The markdown report of a results file: machine details, one row per method (prefill, decode,
 * end to end, correctness, status), the headline ratios, how each llama-server started and stopped,
 * and the exact commands.
 *
 * @module
 */
import type { MethodResult, RunResults } from "./results.ts";
import { contextSummaryLines } from "./context_summary.ts";
import { slotRestoreMarkdown } from "./slot_restore.ts";

const GiB = 2 ** 30;

function fmt(x: number | undefined | null, digits = 1): string {
  return x === undefined || x === null || !Number.isFinite(x) ? "-" : x.toFixed(digits);
}

function checkCell(r: MethodResult): string {
  const c = r.check;
  const v = c.pass === true ? "pass" : c.pass === false ? "FAIL" : "-";
  const parts: string[] = [];
  if (c.meanKld !== undefined) parts.push(`KLD ${c.meanKld.toExponential(2)}`);
  if (c.sameTopPct !== undefined) parts.push(`top ${c.sameTopPct.toFixed(1)}%`);
  if (c.maxAbsDiff !== undefined) parts.push(`max|Δ| ${c.maxAbsDiff.toExponential(2)}`);
  if (c.argmaxAgreePct !== undefined) parts.push(`argmax ${c.argmaxAgreePct.toFixed(1)}%`);
  if (c.detail && c.pass === null && c.mode !== "none") parts.push(c.detail.slice(0, 60));
  return parts.length > 0 ? `${v} (${c.mode}: ${parts.join(", ")})` : `${v}${c.mode === "none" ? "" : ` (${c.mode})`}`;
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a && b ? `${(a / b).toFixed(2)}x` : "-";
}

type Figure = "prefill" | "decode" | "endToEnd";

/** The row with the highest `k` tokens/s, or undefined when none has it. */
function bestOf(rows: MethodResult[], k: Figure): MethodResult | undefined {
  return rows.reduce<MethodResult | undefined>((b, r) => (r[k] && (!b || r[k]!.tps > b[k]!.tps) ? r : b), undefined);
}

/** Ratios the issues ask for, when the methods are present: spillway vs default and vs hand-tuned. */
export function headlineRatios(res: RunResults): string[] {
  const ok = res.results.filter((r) => r.status === "ok" && r.runtime === "llama.cpp");
  const by = (id: string) => ok.find((r) => r.id === id);
  const lines: string[] = [];
  const sp = by("spillway");
  const def = by("default");
  const hands = ok.filter((r) => r.id.startsWith("hand"));
  const best = (k: Figure) => bestOf(hands, k);
  if (sp && def) lines.push(`spillway plan vs llama.cpp default, end to end: ${ratio(sp.endToEnd?.tps, def.endToEnd?.tps)} (prefill ${ratio(sp.prefill?.tps, def.prefill?.tps)}, decode ${ratio(sp.decode?.tps, def.decode?.tps)})`);
  if (sp && hands.length > 0) {
    lines.push(`spillway plan vs best hand-tuned: prefill ${ratio(sp.prefill?.tps, best("prefill")?.prefill?.tps)}, decode ${ratio(sp.decode?.tps, best("decode")?.decode?.tps)}, end to end ${ratio(sp.endToEnd?.tps, best("endToEnd")?.endToEnd?.tps)}`);
  }
  lines.push(...serverRatios(res));
  const shim = by("shim");
  if (shim && def) lines.push(`shim vs llama.cpp default: prefill ${ratio(shim.prefill?.tps, def.prefill?.tps)}, decode ${ratio(shim.decode?.tps, def.decode?.tps)}`);
  const ts = res.results.find((r) => r.id === "torch-shim" && r.status === "ok");
  const ta = res.results.find((r) => r.id === "torch-accelerate" && r.status === "ok");
  if (ts && ta) lines.push(`PyTorch shim vs accelerate offload: decode ${ratio(ts.decode?.tps, ta.decode?.tps)}, prefill ${ratio(ts.prefill?.tps, ta.prefill?.tps)}`);
  if (ts?.roofline && ts.decode) lines.push(`PyTorch shim decode = ${((ts.decode.tps / ts.roofline.decodeTps) * 100).toFixed(0)}% of its PCIe roofline (${ts.roofline.decodeTps.toFixed(2)} t/s: ${ts.roofline.basis})`);
  return lines;
}

/**
 * Ratios of the server section: `spillway run` vs the best hand-tuned llama-server per
 * figure (target >= 95%), and vs llama-server's defaults end to end. Methods are found by config.
 */
export function serverRatios(res: RunResults): string[] {
  const ok = res.results.filter((r) => r.status === "ok" && r.runtime === "llama-server" && r.server);
  const sp = ok.find((r) => r.server!.config === "spillway-run");
  const def = ok.find((r) => r.server!.config === "default");
  const hands = ok.filter((r) => r.server!.config === "flags");
  const best = (k: Figure) => bestOf(hands, k);
  const pct = (a: number | undefined, b: number | undefined): string => (a && b ? `${((a / b) * 100).toFixed(0)}%` : "-");
  const lines: string[] = [];
  if (sp && hands.length > 0) {
    const bp = best("prefill");
    const bd = best("decode");
    const be = best("endToEnd");
    lines.push(`spillway run vs best hand-tuned llama-server: prefill ${pct(sp.prefill?.tps, bp?.prefill?.tps)} (${bp?.id}), decode ${pct(sp.decode?.tps, bd?.decode?.tps)} (${bd?.id}), end to end ${ratio(sp.endToEnd?.tps, be?.endToEnd?.tps)} (target: prefill and decode >= 95%)`);
  }
  if (sp && def) {
    lines.push(`spillway run vs llama-server defaults, end to end ${def.endToEnd?.prompt ?? "?"}+${def.endToEnd?.gen ?? "?"}: ${ratio(sp.endToEnd?.tps, def.endToEnd?.tps)} (${fmt(sp.endToEnd?.seconds, 2)} s vs ${fmt(def.endToEnd?.seconds, 2)} s; prefill ${ratio(sp.prefill?.tps, def.prefill?.tps)}, decode ${ratio(sp.decode?.tps, def.decode?.tps)})`);
  }
  return lines;
}

/** One line per server method: readiness and how it stopped (exit status, SIGKILL, leftovers). */
export function serverStopLines(res: RunResults): string[] {
  return res.results.filter((r) => r.server).map((r) => {
    const s = r.server!;
    const st = s.stop;
    const stop = st === null
      ? "not stopped by the harness"
      : `exit ${st.exitStatus ?? "?"} ${st.seconds.toFixed(1)} s after SIGTERM${st.killed ? " (needed SIGKILL)" : ""}, ${st.orphans} process(es) left${st.orphans > 0 ? ` (killed: ${(st.orphanCommands ?? []).join("; ").slice(0, 200)})` : ""}, port ${st.portFree ? "free" : "STILL ANSWERING"}`;
    return `${r.id}: ${s.readySeconds === null ? "never ready" : `ready in ${s.readySeconds.toFixed(1)} s`}; ${stop}${s.launched ? `; launched \`${s.launched.slice(0, 300)}\`` : ""}`;
  });
}

/** Renders the whole report. */
export function renderMarkdown(res: RunResults): string {
  const m = res.machine;
  const g = m.gpus[0];
  const out: string[] = [];
  out.push(`# ${res.matrix}: ${res.kind === "gpu" ? "GPU" : "CPU"} benchmark, ${res.startedAt.slice(0, 10)}`, "");
  out.push(`- GPU: ${g ? `${g.name}, ${(g.memoryTotalMiB / 1024).toFixed(0)} GiB, driver ${g.driver}, CUDA ${m.cudaVersion ?? "?"}, PCIe gen ${g.pcieGenCurrent ?? "?"} x${g.pcieWidthCurrent ?? "?"} (max gen ${g.pcieGenMax ?? "?"} x${g.pcieWidthMax ?? "?"})` : "none"}`);
  out.push(`- CPU: ${m.cpuModel}, ${m.cpuCores} cores; RAM ${(m.ramBytes / GiB).toFixed(0)} GiB; kernel ${m.kernel}`);
  out.push(`- Software: ${Object.entries(res.software).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  out.push(`- Started ${res.startedAt}, finished ${res.finishedAt ?? "(incomplete)"}`, "");
  // A column for the model only where the run has several (one matrix, several shapes).
  const byModel = new Set(res.results.map((r) => r.model)).size > 1;
  out.push(`| ${byModel ? "model | " : ""}method | free VRAM | prefill t/s | decode t/s | end to end t/s (s) | check | status |`);
  out.push(`| ${byModel ? "--- | " : ""}--- | --- | --- | --- | --- | --- | --- |`);
  for (const r of res.results) {
    const free = r.freeVramGiB === null ? "all" : `${r.freeVramGiB} GiB`;
    const pp = r.prefill ? `${fmt(r.prefill.tps)} ±${fmt(r.prefill.stddev)} (pp${r.prefill.tokens})` : "-";
    const tg = r.decode ? `${fmt(r.decode.tps, 2)} ±${fmt(r.decode.stddev, 2)} (tg${r.decode.tokens})` : "-";
    const e2e = r.endToEnd ? `${fmt(r.endToEnd.tps)} (${fmt(r.endToEnd.seconds, 1)} s, pp${r.endToEnd.prompt}+tg${r.endToEnd.gen})` : "-";
    const status = r.status === "ok" ? "ok" : `${r.status}${r.error ? `: ${r.error.split("\n")[0].slice(0, 80)}` : ""}`;
    out.push(`| ${byModel ? `${r.model} | ` : ""}${r.label} | ${free} | ${pp} | ${tg} | ${e2e} | ${checkCell(r)} | ${status} |`);
  }
  const ratios = headlineRatios(res);
  if (ratios.length > 0) out.push("", "## Ratios", "", ...ratios.map((l) => `- ${l}`));
  out.push(...contextSummaryLines(res), ...slotRestoreMarkdown(res.results));
  const stops = serverStopLines(res);
  if (stops.length > 0) out.push("", "## Server starts and stops", "", ...stops.map((l) => `- ${l}`));
  if (res.notes.length > 0) out.push("", "## Notes", "", ...res.notes.map((n) => `- ${n}`));
  out.push("", "## Commands", "");
  for (const r of res.results) {
    const env = Object.entries(r.env).filter(([k]) => k !== "PYTHONUNBUFFERED").map(([k, v]) => `${k}=${v}`).join(" ");
    out.push(`- ${r.id}: \`${[env, ...r.command].filter(Boolean).join(" ")}\`${r.derivedFrom ? ` (${r.derivedFrom.slice(0, 300)})` : ""}`);
  }
  return out.join("\n") + "\n";
}
