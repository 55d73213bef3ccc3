/**
 * Charts of autotune outcomes: predicted versus measured tokens/s per candidate (prefill and decode
 * panels, grouped bars, calibrated predictions when present), as SVG built here and rendered to PNG
 * with @resvg/resvg-js (loaded lazily, so the SVG works where the native renderer is absent).
 * @module
 */
import { createRequire } from "node:module";
import type { AutotuneEntry } from "./outcome_cache.ts";

/** One group of bars. */
export interface BarGroup {
  label: string;
  /** One value per series (NaN or <= 0: no bar). */
  values: number[];
}

/** A bar chart panel. */
export interface BarPanel {
  title: string;
  unit: string;
  groups: BarGroup[];
}

const COLORS = ["#8c8c8c", "#1f77b4", "#ff7f0e", "#2ca02c"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** Grouped bar chart panels side by side, sharing one legend of `series` names. */
export function barChartSvg(title: string, series: string[], panels: BarPanel[]): string {
  const panelW = 520;
  // Room on the left for the first panel's rotated group labels.
  const W = panelW * panels.length + 100;
  const H = 420;
  const top = 70;
  const bottom = 120;
  const plotH = H - top - bottom;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" font-size="16" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  series.forEach((s, i) => {
    const x = 40 + i * 170;
    out.push(`<rect x="${x}" y="36" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`);
    out.push(`<text x="${x + 18}" y="47" font-size="12">${esc(s)}</text>`);
  });
  panels.forEach((p, pi) => {
    const x0 = 80 + pi * panelW + 50;
    const plotW = panelW - 70;
    const max = niceMax(Math.max(0, ...p.groups.flatMap((g) => g.values.filter((v) => Number.isFinite(v)))));
    out.push(`<text x="${x0 + plotW / 2}" y="${top - 6}" font-size="13" text-anchor="middle">${esc(p.title)} (${esc(p.unit)})</text>`);
    for (let t = 0; t <= 4; t++) {
      const y = top + plotH - (plotH * t) / 4;
      out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + plotW}" y2="${y}" stroke="#ddd"/>`);
      out.push(`<text x="${x0 - 4}" y="${y + 4}" font-size="10" text-anchor="end">${fmt((max * t) / 4)}</text>`);
    }
    const gw = plotW / Math.max(1, p.groups.length);
    const bw = Math.min(28, (gw * 0.8) / Math.max(1, series.length));
    p.groups.forEach((g, gi) => {
      const gx = x0 + gi * gw + (gw - bw * series.length) / 2;
      g.values.forEach((v, si) => {
        if (!(v > 0) || !Number.isFinite(v)) return;
        const h = (plotH * v) / max;
        out.push(`<rect x="${(gx + si * bw).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${g.label} ${series[si]}: ${fmt(v)}`)}</title></rect>`);
        out.push(`<text x="${(gx + si * bw + bw / 2 - 1).toFixed(1)}" y="${(top + plotH - h - 3).toFixed(1)}" font-size="9" text-anchor="middle">${fmt(v)}</text>`);
      });
      const lx = x0 + gi * gw + gw / 2;
      const ly = top + plotH + 12;
      out.push(`<text x="${lx.toFixed(1)}" y="${ly}" font-size="10" text-anchor="end" transform="rotate(-30 ${lx.toFixed(1)} ${ly})">${esc(g.label)}</text>`);
    });
    out.push(`<line x1="${x0}" y1="${top + plotH}" x2="${x0 + plotW}" y2="${top + plotH}" stroke="#333"/>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** Predicted (and calibrated) versus measured tokens/s per candidate of an autotune outcome. */
export function autotuneChartSvg(entry: AutotuneEntry): string {
  const calibrated = entry.rows.some((r) => r.calibrated);
  const series = ["predicted", "measured", ...(calibrated ? ["calibrated"] : [])];
  const label = (id: string) => (id === entry.chosen ? `${id} (chosen)` : id);
  const panel = (key: "prefillTps" | "decodeTps", title: string): BarPanel => ({
    title,
    unit: "tokens/s",
    groups: entry.rows.map((r) => ({
      label: label(r.id),
      values: [r.predicted[key], r.measured ? r.measured[key] : NaN, ...(calibrated ? [r.calibrated ? r.calibrated[key] : NaN] : [])],
    })),
  });
  const w = entry.workload;
  return barChartSvg(
    `${entry.model.path.split("/").pop()} on ${entry.hardware.name}: ${w.objective} ${w.promptTokens}+${w.generatedTokens}`,
    series,
    [panel("prefillTps", "prefill"), panel("decodeTps", "decode")],
  );
}

/**
 * Render SVG text to PNG bytes with @resvg/resvg-js.
 * @throws Error when the renderer is not installed (the caller keeps the SVG).
 */
export function renderPng(svg: string): Uint8Array {
  // deno-lint-ignore no-explicit-any
  const { Resvg } = createRequire(import.meta.url)("@resvg/resvg-js") as { Resvg: any };
  const r = new Resvg(svg, { fitTo: { mode: "zoom", value: 2 }, font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" } });
  return new Uint8Array(r.render().asPng());
}
