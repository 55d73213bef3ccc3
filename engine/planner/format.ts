/**
 * The readable form of a plan: a table of candidates (memory per tier, predicted prefill and
 * decode, total time for the workload), the chosen one marked, and why.
 *
 * @module
 */
import type { Candidate, Plan } from "../../core/types.ts";

const gib = (b: number): string => (b / 2 ** 30).toFixed(1);
const tps = (x: number): string => (x >= 1000 ? x.toFixed(0) : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

function pad(cells: string[][]): string[] {
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (i >= 2 && i <= 7 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd());
}

/** One row per candidate: mark, id, VRAM / mapped / CPU GiB, prefill, decode, total, fit. */
export function candidateTable(candidates: Candidate[], chosen: string): string[] {
  const rows: string[][] = [["", "candidate", "VRAM GiB", "mapped GiB", "host GiB", "prefill t/s", "decode t/s", "total s", "fits"]];
  for (const c of candidates) {
    rows.push([
      c.id === chosen ? "*" : "",
      c.id,
      gib(c.memory.vram),
      gib(c.memory.host_mapped),
      gib(c.memory.host_cpu),
      tps(c.predicted.prefillTps),
      tps(c.predicted.decodeTps),
      c.predicted.totalSeconds.toFixed(1),
      c.fits ? "yes" : `no: ${c.misfit ?? ""}`,
    ]);
  }
  return pad(rows);
}

/** Placements of a candidate, one line each. */
export function placementLines(c: Candidate): string[] {
  return c.placements.map((p) => {
    const layers = p.layers ? (p.layers[0] === p.layers[1] ? ` block ${p.layers[0]}` : ` blocks ${p.layers[0]}-${p.layers[1]}`) : "";
    return `${(p.class + layers).padEnd(28)} ${p.tier.padEnd(12)} ${gib(p.bytes).padStart(6)} GiB`;
  });
}

/** Per device of a split (issue 19): blocks, memory used of free, its share of a decoded token. */
export function deviceLines(c: Candidate): string[] {
  const mib = (b: number): string => (b / 2 ** 20).toFixed(b < 2 ** 30 ? 1 : 0);
  const rows = (c.devices ?? []).map((d) => {
    const blocks = d.layers ? (d.layers[0] === d.layers[1] ? `block ${d.layers[0]}` : `blocks ${d.layers[0]}-${d.layers[1]}`) : "no blocks";
    return `${`${d.device} ${d.name}${d.endpoint ? ` @${d.endpoint}` : ""}`.padEnd(34)} ${(blocks + (d.output ? " + output" : "")).padEnd(22)} ` +
      `${mib(d.totalBytes).padStart(8)} of ${mib(d.freeBytes).padStart(8)} MiB  decode ${d.decodeMs} ms/token, hand-off ${d.transferMs} ms`;
  });
  return ["device                             blocks                       used       free      per token", ...rows];
}

/** The whole plan as text. */
export function formatPlan(plan: Plan): string {
  const out: string[] = [];
  const chosen = plan.candidates.find((c) => c.id === plan.chosen)!;
  out.push(`model     ${plan.model.path} (${plan.model.architecture}, ${plan.model.quantization}, ${gib(plan.model.bytes)} GiB)`);
  out.push(`runtime   ${plan.runtime}`);
  out.push(`hardware  ${plan.hardware.name} (${plan.hardware.source})`);
  out.push(`workload  ${plan.workload.objective}: ${plan.workload.promptTokens} prompt + ${plan.workload.generatedTokens} generated tokens`);
  for (const n of plan.notes ?? []) out.push(`note      ${n}`);
  out.push("");
  out.push(...candidateTable(plan.candidates, plan.chosen));
  out.push("");
  out.push(`chosen: ${chosen.id}: ${chosen.label}`);
  out.push(...(chosen.devices ? deviceLines(chosen) : placementLines(chosen)).map((l) => `  ${l}`));
  out.push("");
  out.push(plan.reason);
  return out.join("\n");
}
