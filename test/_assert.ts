/**
 * The assertion names and semantics of @std/assert (JSR cannot be reached from here), built on
 * node:assert/strict so the same test files run under Node, Bun and Deno.
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "./_assert.ts";
 * assertEquals({ a: 1 }, { a: 1 });
 * const e = assertThrows(() => { throw new TypeError("bad x"); }, TypeError, "bad");
 * ```
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Thrown when an assertion fails (same name as @std/assert's). */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

function fmt(v: unknown): string {
  try {
    return typeof v === "bigint" ? `${v}n` : JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

function wrap(fn: () => void, msg?: string): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof nodeAssert.AssertionError) throw new AssertionError(msg ? `${msg}: ${e.message}` : e.message);
    throw e;
  }
}

/** Assert that `expr` is truthy. */
export function assert(expr: unknown, msg = "Expected expression to be truthy"): asserts expr {
  if (!expr) throw new AssertionError(msg);
}

/** Deep structural equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  wrap(() => nodeAssert.deepStrictEqual(actual, expected), msg);
}

/** Deep structural inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  wrap(() => nodeAssert.notDeepStrictEqual(actual, expected), msg);
}

/** Identity equality (Object.is). */
export function assertStrictEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  wrap(() => nodeAssert.strictEqual(actual, expected), msg);
}

/** Value is not null or undefined. */
export function assertExists<T>(actual: T, msg?: string): asserts actual is NonNullable<T> {
  if (actual === null || actual === undefined) throw new AssertionError(msg ?? `Expected actual: "${actual}" to not be null or undefined.`);
}

/** |actual - expected| <= tolerance (default: 1e-7 relative, as @std/assert). */
export function assertAlmostEquals(actual: number, expected: number, tolerance?: number, msg?: string): void {
  const tol = tolerance ?? Math.abs(expected * 1e-7);
  if (Object.is(actual, expected)) return;
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new AssertionError(msg ?? `Expected actual: "${actual}" to be close to "${expected}": delta "${Math.abs(actual - expected)}" is greater than "${tol}".`);
  }
}

/** actual > expected. */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual > expected)) throw new AssertionError(msg ?? `Expect ${fmt(actual)} > ${fmt(expected)}`);
}

/** actual >= expected. */
export function assertGreaterOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual >= expected)) throw new AssertionError(msg ?? `Expect ${fmt(actual)} >= ${fmt(expected)}`);
}

/** actual < expected. */
export function assertLess<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual < expected)) throw new AssertionError(msg ?? `Expect ${fmt(actual)} < ${fmt(expected)}`);
}

/** actual <= expected. */
export function assertLessOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual <= expected)) throw new AssertionError(msg ?? `Expect ${fmt(actual)} <= ${fmt(expected)}`);
}

/** String matches a regular expression. */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  if (!expected.test(actual)) throw new AssertionError(msg ?? `Expected actual: "${actual}" to match: "${expected}".`);
}

/** String does not match a regular expression. */
export function assertNotMatch(actual: string, expected: RegExp, msg?: string): void {
  if (expected.test(actual)) throw new AssertionError(msg ?? `Expected actual: "${actual}" to not match: "${expected}".`);
}

/** String contains a substring. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (!actual.includes(expected)) throw new AssertionError(msg ?? `Expected actual: "${actual}" to contain: "${expected}".`);
}

/** Array contains all the expected items (deep equality). */
export function assertArrayIncludes<T>(actual: ArrayLike<T>, expected: ArrayLike<T>, msg?: string): void {
  const arr = Array.from(actual);
  for (const item of Array.from(expected)) {
    if (!arr.some((a) => { try { nodeAssert.deepStrictEqual(a, item); return true; } catch { return false; } })) {
      throw new AssertionError(msg ?? `Expected actual: ${fmt(arr)} to include: ${fmt(item)}.`);
    }
  }
}

function subset(actual: unknown, expected: unknown): unknown {
  if (Array.isArray(expected) && Array.isArray(actual)) return expected.map((e, i) => subset(actual[i], e));
  if (expected && typeof expected === "object" && actual && typeof actual === "object" && !(expected instanceof RegExp)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(expected)) out[k] = subset((actual as Record<string, unknown>)[k], (expected as Record<string, unknown>)[k]);
    return out;
  }
  return actual;
}

/** `actual` has at least the properties (recursively) of `expected`. */
export function assertObjectMatch(actual: Record<PropertyKey, unknown>, expected: Record<PropertyKey, unknown>, msg?: string): void {
  wrap(() => nodeAssert.deepStrictEqual(subset(actual, expected), expected), msg);
}

/** Value is an instance of the class. */
export function assertInstanceOf<T extends abstract new (...args: never[]) => unknown>(actual: unknown, expectedType: T, msg?: string): asserts actual is InstanceType<T> {
  if (!(actual instanceof expectedType)) {
    throw new AssertionError(msg ?? `Expected object to be an instance of "${expectedType.name}" but was "${(actual as object)?.constructor?.name ?? typeof actual}".`);
  }
}

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

function checkError<E extends Error>(e: unknown, ErrorClass?: ErrorClass<E>, msgIncludes?: string, msg?: string): E {
  if (ErrorClass && !(e instanceof ErrorClass)) {
    throw new AssertionError(msg ?? `Expected error to be instance of "${ErrorClass.name}", but was "${(e as Error)?.name ?? typeof e}": ${(e as Error)?.message ?? e}`);
  }
  if (msgIncludes !== undefined && !String((e as Error)?.message).includes(msgIncludes)) {
    throw new AssertionError(msg ?? `Expected error message to include "${msgIncludes}", but got "${(e as Error)?.message}".`);
  }
  return e as E;
}

/** `fn` throws (optionally an instance of `ErrorClass` whose message includes `msgIncludes`); returns the error. */
export function assertThrows<E extends Error = Error>(fn: () => unknown, ErrorClass?: ErrorClass<E>, msgIncludes?: string, msg?: string): E {
  let thrown = false;
  let err: unknown;
  try {
    fn();
  } catch (e) {
    thrown = true;
    err = e;
  }
  if (!thrown) throw new AssertionError(msg ?? "Expected function to throw.");
  return checkError(err, ErrorClass, msgIncludes, msg);
}

/** `fn` rejects (optionally an instance of `ErrorClass` whose message includes `msgIncludes`); returns the error. */
export async function assertRejects<E extends Error = Error>(fn: () => PromiseLike<unknown>, ErrorClass?: ErrorClass<E>, msgIncludes?: string, msg?: string): Promise<E> {
  let thrown = false;
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    thrown = true;
    err = e;
  }
  if (!thrown) throw new AssertionError(msg ?? "Expected function to reject.");
  return checkError(err, ErrorClass, msgIncludes, msg);
}

/** Always fails. */
export function fail(msg?: string): never {
  throw new AssertionError(`Failed assertion${msg ? `: ${msg}` : "."}`);
}

/** Marks code that must not be reached. */
export function unreachable(msg?: string): never {
  throw new AssertionError(msg ?? "unreachable");
}
