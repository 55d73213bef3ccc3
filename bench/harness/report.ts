/**
 * Chart and report of a results file: an SVG with two horizontal bar panels (prefill and decode
 * tokens/s per method; their scales differ a hundredfold), rendered to PNG with @resvg/resvg-js,
 * and the markdown table (table.ts). Runs where results come back (resvg is native; the GPU
 * machine does not carry it).
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { type MethodResult, readResults, type RunResults } from "./results.ts";
import { renderMarkdown } from "./table.ts";

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceMax(x: number): number {
  if (x <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

/** The chart as SVG text: one bar per method in each panel, failed methods marked, values printed. */
export function renderChartSvg(res: RunResults): string {
  const rows = res.results;
  const labelW = 430, panelW = 330, gap = 40, rowH = 26, top = 70, left = 10;
  const height = top + rows.length * rowH + 40;
  const width = left + labelW + 2 * panelW + gap + 20;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  const g = res.machine.gpus[0];
  parts.push(`<text x="${left}" y="22" font-size="16" font-weight="bold">${esc(res.matrix)}: tokens/s per method (higher is better)</text>`);
  parts.push(`<text x="${left}" y="42" font-size="12" fill="#444">${esc(g ? `${g.name}, PCIe gen ${g.pcieGenCurrent ?? "?"} x${g.pcieWidthCurrent ?? "?"}` : res.machine.cpuModel)}; ${esc(res.startedAt.slice(0, 10))}</text>`);
  const panels: { key: "prefill" | "decode"; title: string; color: string }[] = [
    { key: "prefill", title: "prefill (prompt) t/s", color: "#3b6ea8" },
    { key: "decode", title: "decode (generation) t/s", color: "#d2762b" },
  ];
  panels.forEach((p, pi) => {
    const x0 = left + labelW + pi * (panelW + gap);
    const max = niceMax(Math.max(0, ...rows.map((r) => r[p.key]?.tps ?? 0)));
    parts.push(`<text x="${x0}" y="${top - 12}" font-size="13" font-weight="bold">${esc(p.title)}</text>`);
    parts.push(`<line x1="${x0}" y1="${top - 4}" x2="${x0}" y2="${top + rows.length * rowH}" stroke="#888"/>`);
    for (const frac of [0.5, 1]) {
      const gx = x0 + frac * (panelW - 60);
      parts.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${top + rows.length * rowH}" stroke="#ddd"/>`);
      parts.push(`<text x="${gx}" y="${top + rows.length * rowH + 14}" font-size="10" text-anchor="middle" fill="#666">${max * frac}</text>`);
    }
    rows.forEach((r: MethodResult, i) => {
      const y = top + i * rowH + 4;
      const v = r[p.key]?.tps;
      if (v === undefined || !Number.isFinite(v)) {
        parts.push(`<text x="${x0 + 4}" y="${y + 14}" font-size="11" fill="#b00">${esc(r.status === "ok" ? "n/a" : r.status)}</text>`);
        return;
      }
      const w = Math.max(1, (v / max) * (panelW - 60));
      const fail = r.check.pass === false;
      parts.push(`<rect x="${x0}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${fail ? "#bbb" : p.color}"/>`);
      parts.push(`<text x="${(x0 + w + 4).toFixed(1)}" y="${y + 14}" font-size="11">${v >= 100 ? v.toFixed(0) : v.toFixed(1)}${fail ? " (check failed)" : ""}</text>`);
    });
  });
  rows.forEach((r, i) => {
    const y = top + i * rowH + 18;
    const free = r.freeVramGiB === null ? "" : ` [${r.freeVramGiB} GiB free]`;
    parts.push(`<text x="${left}" y="${y}" font-size="11">${esc((r.label + free).slice(0, 72))}</text>`);
  });
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}

/** Renders SVG text to PNG bytes with @resvg/resvg-js (loaded only here: it is native). */
export async function svgToPng(svg: string): Promise<Uint8Array> {
  const { Resvg } = await import("@resvg/resvg-js");
  const r = new Resvg(svg, { background: "white", fitTo: { mode: "zoom", value: 1.5 }, font: { loadSystemFonts: true } });
  return r.render().asPng();
}

/** Writes results.md, chart.svg and chart.png next to (or into `outDir` for) a results.json (or a folder holding one). */
export async function writeReport(resultsPath: string, outDir?: string): Promise<{ md: string; svg: string; png: string }> {
  const { file: resultsFile, results: res } = readResults(resultsPath);
  const dir = outDir ?? dirname(resultsFile);
  const md = join(dir, "results.md");
  const svgFile = join(dir, "chart.svg");
  const png = join(dir, "chart.png");
  writeFileSync(md, renderMarkdown(res));
  const svg = renderChartSvg(res);
  writeFileSync(svgFile, svg);
  writeFileSync(png, await svgToPng(svg));
  return { md, svg: svgFile, png };
}

/** `harness report --results F [--out D]` (F: a results.json or the folder holding it). */
export async function reportCommand(o: Record<string, string>): Promise<number> {
  if (!o.results) {
    console.error("report: --results <results.json or its folder> is required");
    return 2;
  }
  let files: { md: string; svg: string; png: string };
  try {
    files = await writeReport(resolve(o.results), o.out ? resolve(o.out) : undefined);
  } catch (e) {
    console.error(`report: ${(e as Error).message}`);
    return 1;
  }
  console.log(`wrote ${files.md}, ${files.svg}, ${files.png}`);
  return 0;
}
