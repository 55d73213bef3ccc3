/**
 * `locateField(text, path)`: the line and column of a field path (`placement.cpuLayers[2]`) in
 * JSON5 source, so schema errors point at the spot as syntax errors do. Uses momoa's JSON5 AST
 * (positions of every key and value); called only when a recipe has errors.
 *
 * @example
 * ```ts
 * locateField('{\n  model: { quant: "Q9" }\n}', "model.quant"); // { line: 2, column: 12 }
 * ```
 *
 * @module
 */
import { parse } from "@humanwhocodes/momoa";
import { RecipeSchemaError } from "../../core/errors.ts";

/** A 1-based position in the source. */
export interface SourcePosition {
  line: number;
  column: number;
}

type Node = {
  type: string;
  loc: { start: { line: number; column: number } };
  members?: { name: { type: string; value?: string; name?: string; loc: Node["loc"] }; value: Node }[];
  elements?: { value: Node }[];
};

/** Splits `a.b[2].c` into ["a", "b", 2, "c"]. */
function segments(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

/**
 * Position of the field `path` in `text`: of its key (an unknown or misspelled key) or, with
 * `at: "value"`, of its value. The deepest existing ancestor when the field itself is missing (a
 * missing required key points at its object); the document's start for `(recipe)`; null when the
 * text does not parse.
 */
export function locateField(text: string, path: string, at: "key" | "value" = "value"): SourcePosition | null {
  let doc: { body: Node };
  try {
    doc = parse(text.startsWith("#!") ? text.replace(/^#![^\n]*/, "") : text, { mode: "json5", ranges: false }) as unknown as { body: Node };
  } catch {
    return null;
  }
  let node: Node = doc.body;
  let pos = node.loc.start;
  const segs = path === "(recipe)" ? [] : segments(path);
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    const last = i === segs.length - 1;
    if (typeof s === "number") {
      const el = node.elements?.[s];
      if (!el) break;
      node = el.value;
      pos = node.loc.start;
    } else {
      // The last member of a duplicated key is the one JSON5 keeps.
      const m = [...(node.members ?? [])].reverse().find((x) => (x.name.value ?? x.name.name) === s);
      if (!m) break;
      node = m.value;
      pos = last && at === "key" ? m.name.loc.start : node.loc.start;
    }
  }
  return { line: pos.line, column: pos.column };
}

/**
 * All of a recipe's schema errors in one error, each line located as compilers do:
 * `file:line:column: field.path: what is wrong`. `errors` keeps them one by one.
 */
export class RecipeErrors extends RecipeSchemaError {
  /** Each error with its position (line/column 0 when the source could not be located). */
  readonly errors: { path: string; line: number; column: number; message: string }[];
  constructor(file: string, text: string, found: readonly RecipeSchemaError[]) {
    const located = found.map((e) => {
      const prefix = `${e.file}: ${e.path}: `;
      const detail = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
      const pos = locateField(text, e.path, detail.startsWith("unknown key") ? "key" : "value");
      const where = pos ? `${file}:${pos.line}:${pos.column}` : file;
      return { path: e.path, line: pos?.line ?? 0, column: pos?.column ?? 0, message: `${where}: ${e.path}: ${detail}` };
    });
    super(file, found[0]?.path ?? "(recipe)", "invalid recipe");
    this.errors = located;
    this.message = located.length === 1
      ? located[0]!.message
      : `${located.length} errors in ${file}:\n${located.map((l) => `  ${l.message}`).join("\n")}`;
  }
}
