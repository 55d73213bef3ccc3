/**
 * An autotune outcome as a Markdown table: predicted against measured per candidate.
 *
 * @module
 */
import type { AutotuneEntry } from "./outcome_cache.ts";

function pct(pred: number, meas: number): string {
  if (!(meas > 0) || !(pred > 0)) return "";
  const e = ((pred - meas) / meas) * 100;
  return `${e >= 0 ? "+" : ""}${e.toFixed(0)}%`;
}

/** Predicted and measured side by side, with the cost model's error before and after calibration (Markdown). */
export function formatAutotuneTable(entry: AutotuneEntry): string {
  const w = entry.workload;
  const lines = [
    `# autotune: ${entry.model.path}`,
    "",
    `hardware: ${entry.hardware.name} (${entry.hardware.source}); workload: ${w.objective}, ${w.promptTokens} prompt + ${w.generatedTokens} generated tokens; measured ${entry.measuredAt}`,
    `predicted best: ${entry.predictedChoice}; measured best: **${entry.chosen}**`,
    "",
    "| candidate | predicted pp / tg tok/s | measured pp / tg tok/s | request s pred / meas | error pp / tg before | calibrated pp / tg | error after | held-out error |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of entry.rows) {
    const p = r.predicted;
    const m = r.measured;
    const c = r.calibrated;
    const h = r.heldOut;
    lines.push(
      `| ${r.id === entry.chosen ? `**${r.id}**` : r.id} | ${p.prefillTps} / ${p.decodeTps} | ${m ? `${m.prefillTps} / ${m.decodeTps}` : `failed: ${r.error}`} | ` +
        `${p.totalSeconds} / ${m ? m.totalSeconds : "-"} | ${m ? `${pct(p.prefillTps, m.prefillTps)} / ${pct(p.decodeTps, m.decodeTps)}` : ""} | ` +
        `${c ? `${c.prefillTps} / ${c.decodeTps}` : ""} | ${c && m ? `${pct(c.prefillTps, m.prefillTps)} / ${pct(c.decodeTps, m.decodeTps)}` : ""} | ` +
        `${h && m ? `${pct(h.prefillTps, m.prefillTps)} / ${pct(h.decodeTps, m.decodeTps)}` : ""} |`,
    );
  }
  if (entry.calibration) {
    const ch = Object.entries(entry.calibration.changed).map(([k, v]) => `${k} ${v.from} -> ${v.to}`).join(", ");
    lines.push("", `calibration: squared log error ${entry.calibration.lossBefore} -> ${entry.calibration.lossAfter}; constants: ${ch || "unchanged"}`);
  }
  return lines.join("\n") + "\n";
}
