/**
 * Validate a parsed JSON5 value against a {@link Spec}: every error names the field path, the
 * allowed values or type, and for unknown keys or enum values the closest allowed name.
 *
 * @module
 */
import { RecipeSchemaError } from "../../core/errors.ts";
import type { Spec } from "./schema.ts";
import { parseSize } from "./size.ts";
import { suggest } from "./suggest.ts";

type JsonType = "string" | "number" | "boolean" | "null" | "array" | "object";

function jsonType(v: unknown): JsonType | "other" {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  const t = typeof v;
  if (t === "string" || t === "number" || t === "boolean" || t === "object") return t;
  return "other";
}

function accepts(spec: Spec): JsonType[] {
  switch (spec.kind) {
    case "size":
      return ["number", "string"];
    case "record":
      return ["object"];
    case "union":
      return spec.of.flatMap(accepts);
    default:
      return [spec.kind];
  }
}

function show(v: unknown): string {
  // JSON.stringify writes Infinity and NaN (JSON5 values) as null.
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "..." : s;
}

/** "null", "number Infinity", "object {...}": the type, then the value where it adds something. */
function describe(v: unknown, type: string): string {
  return type === "null" ? "null" : `${type} ${show(v)}`;
}

/** Thrown inside the validator after an error was recorded: the field's subtree stops there. */
class Recorded extends Error {}

/** Append a key or index to a field path (`placement.cpuLayers[2]`). */
export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return path === "" ? key : `${path}.${key}`;
}

/**
 * Check `value` against `spec` and return it with sizes converted to bytes. Every error is found,
 * as compilers do: with `errors` they are all appended there (the return value is then partial);
 * without, the first is thrown.
 * @throws RecipeSchemaError naming `file` and the field path.
 */
export function validate(value: unknown, spec: Spec, file: string, path = "", errors?: RecipeSchemaError[]): unknown {
  const found: RecipeSchemaError[] = errors ?? [];
  let out: unknown;
  try {
    out = check(value, spec, file, path, found);
  } catch (e) {
    if (!(e instanceof Recorded)) throw e;
  }
  if (errors === undefined && found.length > 0) throw found[0];
  return out;
}

/** A field's errors are recorded and the field is skipped; its siblings are still checked. */
function checkField(value: unknown, spec: Spec, file: string, path: string, errors: RecipeSchemaError[]): unknown {
  try {
    return check(value, spec, file, path, errors);
  } catch (e) {
    if (e instanceof Recorded) return undefined;
    throw e;
  }
}

function check(value: unknown, spec: Spec, file: string, path: string, errors: RecipeSchemaError[]): unknown {
  const where = path === "" ? "(recipe)" : path;
  const fail = (detail: string): never => {
    errors.push(new RecipeSchemaError(file, where, detail));
    throw new Recorded();
  };
  const type = jsonType(value);
  const allowedTypes = accepts(spec);
  if (!allowedTypes.includes(type as JsonType)) {
    const enumValues = spec.kind === "union"
      ? spec.of.flatMap((s) => (s.kind === "string" && s.enum ? s.enum : []))
      : spec.kind === "string" && spec.enum
      ? spec.enum
      : [];
    const expected = [...new Set(allowedTypes)].join(" or ");
    const also = enumValues.length > 0 ? ` (strings: ${enumValues.map((e) => JSON.stringify(e)).join(", ")})` : "";
    fail(`expected ${expected}${also}, got ${describe(value, type)}`);
  }
  switch (spec.kind) {
    case "string": {
      const s = value as string;
      if (spec.enum !== undefined && spec.ignoreCase) {
        // Case does not matter (Q8_0 = q8_0): the canonical spelling is returned.
        const canonical = spec.enum.find((e) => e.toLowerCase() === s.toLowerCase());
        if (canonical !== undefined) return canonical;
      }
      if (spec.enum !== undefined && !spec.enum.includes(s)) {
        const near = suggest(s, spec.enum);
        fail(
          `${show(s)} is not allowed${near ? ` (did you mean ${JSON.stringify(near)}?)` : ""}; allowed values: ${
            spec.enum.map((e) => JSON.stringify(e)).join(", ")
          }`,
        );
      }
      return s;
    }
    case "number": {
      const n = value as number;
      if (!Number.isFinite(n)) fail(`expected a finite number, got ${show(n)}`);
      if (spec.integer && !Number.isInteger(n)) fail(`expected an integer, got ${n}`);
      if (spec.min !== undefined && n < spec.min) fail(`must be at least ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max) fail(`must be at most ${spec.max}, got ${n}`);
      return n;
    }
    case "size": {
      const bytes = parseSize(value);
      if (bytes === null) {
        fail(`expected a size: bytes as a number, or a string like "12G", "512M", "32GB" (got ${show(value)})`);
      }
      return bytes;
    }
    case "boolean":
    case "null":
      return value;
    case "array": {
      const arr = value as unknown[];
      if (spec.minItems !== undefined && arr.length < spec.minItems) {
        fail(`expected at least ${spec.minItems} item(s), got ${arr.length}`);
      }
      return arr.map((item, i) => checkField(item, spec.items, file, childPath(path, i), errors));
    }
    case "object": {
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(spec.fields);
      const out: Record<string, unknown> = {};
      let missing = false;
      for (const [k, v] of Object.entries(obj)) {
        // Own keys only: `__proto__` or `constructor` are unknown keys, not Object.prototype's.
        const field = Object.hasOwn(spec.fields, k) ? spec.fields[k] : undefined;
        if (field === undefined) {
          const near = suggest(k, keys);
          errors.push(new RecipeSchemaError(
            file,
            childPath(path, k),
            `unknown key${near ? ` (did you mean ${JSON.stringify(near)}?)` : ""}; allowed keys${
              path === "" ? "" : ` of ${path}`
            }: ${keys.join(", ")}`,
          ));
          continue;
        }
        out[k] = checkField(v, field, file, childPath(path, k), errors);
      }
      for (const r of spec.required ?? []) {
        if (!Object.hasOwn(obj, r)) {
          errors.push(new RecipeSchemaError(file, where, `missing required key ${JSON.stringify(r)}`));
          missing = true;
        }
      }
      if (missing) throw new Recorded();
      return out;
    }
    case "record": {
      const obj = value as Record<string, unknown>;
      return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, checkField(v, spec.values, file, childPath(path, k), errors)]));
    }
    case "union": {
      const option = spec.of.find((s) => accepts(s).includes(type as JsonType))!;
      return check(value, option, file, path, errors);
    }
  }
}
