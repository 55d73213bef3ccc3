/**
 * Shell quoting for display only: a command line a user can paste into a shell. spillway itself
 * never runs anything through a shell (argv arrays only); these strings are for people and logs.
 *
 * @example
 * ```ts
 * import { commandLine, shellQuote } from "./shell.ts";
 * shellQuote("a b"); // "'a b'"
 * commandLine(["llama-server", "-m", "a b.gguf"], { LD_PRELOAD: "/x/lib.so" }); // "LD_PRELOAD=/x/lib.so llama-server -m 'a b.gguf'"
 * ```
 *
 * @module
 */

/** `word` as is when it needs no quoting, else in single quotes (a `'` inside written as `'\''`). */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `NAME=value` words of an environment, quoted. */
export function envWords(env: Record<string, string> = {}): string[] {
  return Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`);
}

/**
 * One paste-able line: the environment assignments, then argv. `envCommand` puts `env` in front of
 * the assignments (a line that also works where `NAME=value cmd` is not shell syntax, e.g. fish).
 */
export function commandLine(argv: readonly string[], env: Record<string, string> = {}, envCommand = false): string {
  const e = envWords(env);
  return [...(envCommand && e.length ? ["env"] : []), ...e, ...argv.map(shellQuote)].join(" ");
}
