/**
 * The long-context summary of a results file (issue 21, bench/matrices/context-12g.json5): per
 * workload (context depth), spillway's plan against llama.cpp's default and the best hand-tuned
 * configuration (decode target >= 1.2x and >= 1.0x at 32k), and the KL divergence of each KV type
 * against the f16 reference at the same context. Methods are found by id: `default`, `hand-*`,
 * `spillway*` (plans), `kv-*` (fixed placement, one KV type each).
 *
 * @module
 */
import type { MethodResult, RunResults } from "./results.ts";

const x = (a: number | undefined, b: number | undefined): string => (a && b ? `${(a / b).toFixed(2)}x` : "-");
const kld = (r: MethodResult): string => (r.check.meanKld !== undefined ? r.check.meanKld.toExponential(2) : r.check.detail ? `not measured (${r.check.detail.slice(0, 60)})` : "not measured");

/** Markdown lines (a heading and one block per workload), or none when no plan and default ran. */
export function contextSummaryLines(res: RunResults): string[] {
  const ok = res.results.filter((r) => r.status === "ok" && r.runtime === "llama.cpp");
  const workloads = [...new Set(ok.map((r) => r.workload))];
  const out: string[] = [];
  for (const w of workloads) {
    const rows = ok.filter((r) => r.workload === w);
    const def = rows.find((r) => r.id === "default");
    const plans = rows.filter((r) => r.id.startsWith("spillway"));
    const hands = rows.filter((r) => r.id.startsWith("hand"));
    const kv = rows.filter((r) => r.id.startsWith("kv-") || r.id.startsWith("spillway"));
    if (plans.length === 0 && kv.length === 0) continue;
    const bestHand = (k: "prefill" | "decode") => hands.reduce<MethodResult | undefined>((b, r) => (r[k] && (!b || r[k]!.tps > b[k]!.tps) ? r : b), undefined);
    out.push("", `### ${w}`, "");
    for (const p of plans) {
      const bd = bestHand("decode");
      const bp = bestHand("prefill");
      out.push(
        `- ${p.id}: decode ${x(p.decode?.tps, def?.decode?.tps)} of llama.cpp's default (target >= 1.2x at 32k), ${x(p.decode?.tps, bd?.decode?.tps)} of the best hand-tuned (${bd?.id ?? "none"}; target >= 1.0x); ` +
          `prefill ${x(p.prefill?.tps, def?.prefill?.tps)} and ${x(p.prefill?.tps, bp?.prefill?.tps)}; KL divergence vs f16 all-in-VRAM: ${kld(p)}`,
      );
    }
    const kvRows = kv.filter((r) => r.id.startsWith("kv-"));
    if (kvRows.length > 0) {
      out.push(`- KV type at the same placement (mean KL divergence vs the f16 all-in-VRAM reference; decode t/s): ` +
        kvRows.map((r) => `${r.id} ${kld(r)}, ${r.decode ? r.decode.tps.toFixed(2) : "-"}`).join("; "));
    }
  }
  return out.length > 0 ? ["", "## Long context (issue 21)", ...out] : [];
}
