/**
 * Temporary folders for tests: made before the body, removed after it however it ends (a process
 * "exit" handler is not enough: deno test never runs one).
 *
 * @example
 * test("writes a file", () => withTempDir("my-test-", (dir) => { writeFileSync(join(dir, "f"), "x"); }));
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Runs `fn` with a fresh folder under the system temp directory, then removes the folder. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
