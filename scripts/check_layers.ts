/**
 * The layer check (issue 15): every import of the project's TypeScript points down the layers of
 * docs/architecture.md, no import circle exists between files, and no `#include` circle exists
 * between the C files of the shim and the kernel module. Runs in CI through
 * test/architecture_layers.test.ts (`npm test`); by hand: `npx tsx scripts/check_layers.ts`
 * (exit 1 and one line per problem when it fails).
 *
 * Imports are read with TypeScript's own pre-parser (ts.preProcessFile: static imports,
 * `export ... from`, dynamic import() and require(); comments and strings ignored), so a JSDoc
 * example cannot count as an import.
 *
 * @example
 * ```ts
 * import { checkLayers } from "./check_layers.ts";
 * const problems = checkLayers("/path/to/spillway"); // [] when the structure holds
 * ```
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, normalize, resolve, sep } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

// deno-lint-ignore no-explicit-any
const ts: any = createRequire(import.meta.url)("typescript");

/** One layer: the files whose path starts with a prefix (and with none of `except`). */
export interface Layer {
  group: string;
  prefix: string[];
  rank: number;
  except?: string[];
}

/** One import: the imported file and the line of the import statement. */
export interface ImportEdge {
  to: string;
  line: number;
  missing: boolean;
}

/**
 * The layers, lowest first. A file belongs to the first entry whose prefix its path starts with;
 * it may import files of its own group and of any group of a lower rank, nothing else. Groups of
 * the same rank (kmod/ and shim/, commands/ and bench/) may not import each other.
 */
export const LAYERS: readonly Layer[] = [
  { group: "core", prefix: ["core/"], rank: 0 },
  { group: "ffi", prefix: ["ffi/"], rank: 1 },
  { group: "kmod", prefix: ["kmod/"], rank: 2, except: ["kmod/testbed/"] },
  { group: "shim", prefix: ["shim/"], rank: 2 },
  // engine: its stages, in the order they may use each other
  { group: "engine/model", prefix: ["engine/model/"], rank: 3 },
  { group: "engine/hardware", prefix: ["engine/hardware/"], rank: 3 },
  { group: "engine/monitor", prefix: ["engine/monitor.ts"], rank: 3 },
  { group: "engine/placement_map", prefix: ["engine/placement_map.ts"], rank: 4 },
  { group: "engine/recipe", prefix: ["engine/recipe/"], rank: 4 },
  { group: "engine/runtimes", prefix: ["engine/runtimes/"], rank: 5 },
  { group: "engine/planner", prefix: ["engine/planner/"], rank: 6 },
  { group: "engine/autotune", prefix: ["engine/autotune/"], rank: 7 },
  { group: "engine/launch", prefix: ["engine/launch/"], rank: 7 },
  { group: "engine/recipe_plan", prefix: ["engine/recipe_plan.ts"], rank: 8 },
  { group: "commands", prefix: ["commands/"], rank: 9 },
  { group: "bench", prefix: ["bench/"], rank: 9 },
  { group: "kmod/testbed", prefix: ["kmod/testbed/"], rank: 9 },
  { group: "cli", prefix: ["cli.ts"], rank: 10 },
  { group: "mod", prefix: ["mod.ts"], rank: 10 },
  { group: "examples", prefix: ["examples/"], rank: 11 },
];

/** Folders searched for .ts files (test/ may import anything and is not checked). */
const ROOTS = ["core", "ffi", "kmod", "shim", "engine", "commands", "bench", "examples", "cli.ts", "mod.ts"];
const SKIP = new Set(["node_modules", "dist", ".pack"]);

/** The layer of a repository-relative path (with `/` separators), or null when none applies. */
export function layerOf(path: string): Layer | null {
  for (const l of LAYERS) {
    if (l.except?.some((p) => path.startsWith(p))) continue;
    if (l.prefix.some((p) => path === p || path.startsWith(p))) return l;
  }
  return null;
}

function listTs(root: string, rel: string): string[] {
  const p = join(root, rel);
  let st;
  try {
    st = statSync(p);
  } catch {
    return [];
  }
  if (st.isFile()) return rel.endsWith(".ts") && !rel.endsWith(".d.ts") ? [rel] : [];
  const out: string[] = [];
  for (const name of readdirSync(p).sort()) {
    if (SKIP.has(name)) continue;
    out.push(...listTs(root, `${rel}/${name}`));
  }
  return out;
}

/** Project-relative imports of each file: Map<file, {to, line}[]> (only imports of project .ts files). */
export function importGraph(root: string): Map<string, ImportEdge[]> {
  const files = ROOTS.flatMap((r) => listTs(root, r));
  const known = new Set(files);
  const graph = new Map<string, ImportEdge[]>();
  for (const file of files) {
    const text = readFileSync(join(root, file), "utf8");
    const info = ts.preProcessFile(text, true, true);
    const edges: ImportEdge[] = [];
    for (const ref of info.importedFiles as { fileName: string; pos: number }[]) {
      const spec = ref.fileName;
      if (!spec.startsWith(".")) continue;
      const to = normalize(join(dirname(file), spec)).split(sep).join("/");
      if (!to.endsWith(".ts")) continue;
      const line = text.slice(0, ref.pos).split("\n").length;
      edges.push({ to, line, missing: !known.has(to) });
    }
    graph.set(file, edges);
  }
  return graph;
}

/** Import circles between files (strongly connected components of more than one file, or a self import). */
export function circles(graph: Map<string, ImportEdge[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], on = new Set<string>(), out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index), low.set(v, index), index++;
    stack.push(v), on.add(v);
    for (const { to } of graph.get(v) ?? []) {
      if (!graph.has(to)) continue;
      if (!idx.has(to)) visit(to), low.set(v, Math.min(low.get(v)!, low.get(to)!));
      else if (on.has(to)) low.set(v, Math.min(low.get(v)!, idx.get(to)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do (w = stack.pop()!), on.delete(w), comp.push(w);
      while (w !== v);
      const self = (graph.get(v) ?? []).some((e) => e.to === v);
      if (comp.length > 1 || self) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** The C parts whose `#include "..."` graph must have no circle, with their include directories. */
const C_PARTS: { dirs: string[]; include: string[] }[] = [
  { dirs: ["shim/src", "shim/include"], include: ["shim/include", "kmod/include"] },
  { dirs: ["kmod/src", "kmod/include/uapi"], include: ["kmod/include"] },
];

/** `#include "..."` edges between the project's C files (system headers left out). */
export function includeGraph(root: string): Map<string, ImportEdge[]> {
  const graph = new Map<string, ImportEdge[]>();
  for (const part of C_PARTS) {
    for (const dir of part.dirs) {
      let names: string[];
      try {
        names = readdirSync(join(root, dir)).sort();
      } catch {
        continue;
      }
      for (const name of names) {
        if (!/\.[ch]$/.test(name)) continue;
        const file = `${dir}/${name}`;
        const lines = readFileSync(join(root, file), "utf8").split("\n");
        const edges: ImportEdge[] = [];
        lines.forEach((text, i) => {
          const m = /^\s*#\s*include\s+"([^"]+)"/.exec(text);
          if (!m) return;
          const candidates = [join(dir, m[1]!), ...part.include.map((d) => join(d, m[1]!))].map((c) => normalize(c).split(sep).join("/"));
          const to = candidates.find((c) => existsSync(join(root, c)));
          if (to !== undefined) edges.push({ to, line: i + 1, missing: false });
        });
        graph.set(file, edges);
      }
    }
  }
  return graph;
}

/** Every problem found under `root`, one line each (empty when the structure holds). */
export function checkLayers(root: string): string[] {
  const graph = importGraph(root);
  const problems: string[] = [];
  for (const [file, edges] of graph) {
    const from = layerOf(file);
    if (from === null) {
      problems.push(`${file}: in no layer (add it to LAYERS in scripts/check_layers.ts)`);
      continue;
    }
    for (const { to, line, missing } of edges) {
      if (missing) {
        problems.push(`${file}:${line}: imports ${to}, which does not exist`);
        continue;
      }
      const target = layerOf(to);
      if (target === null || target.group === from.group) continue;
      if (target.rank >= from.rank) {
        problems.push(`${file}:${line}: imports ${to}: layer ${from.group} (rank ${from.rank}) may not import ${target.group} (rank ${target.rank}); imports point down only`);
      }
    }
  }
  for (const c of circles(graph)) problems.push(`import circle: ${c.join(" <-> ")}`);
  for (const c of circles(includeGraph(root))) problems.push(`#include circle: ${c.join(" <-> ")}`);
  return problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(fileURLToPath(import.meta.url), "../..");
  const problems = checkLayers(process.argv[2] ? resolve(process.argv[2]) : root);
  for (const p of problems) console.log(p);
  console.log(problems.length ? `layer check: ${problems.length} problem(s)` : "layer check: imports point down, no circles");
  process.exit(problems.length ? 1 : 0);
}
