/**
 * The directory llama-server saves slots in (`--slot-save-path`, issue 21): a recipe's
 * `promptCache.dir`. Saved slots hold the KV cache of prompts, i.e. the user's text in another
 * form, so the directory is private (0700, owned by the user) and a symlink in its place is refused
 * rather than followed (another user could point it at a directory of theirs). llama-server
 * refuses a path that is not an existing directory, so it is created before the launch.
 *
 * @example
 * ```ts
 * ensurePrivateDir("/home/me/.cache/spillway/slots"); // created 0700, or checked and tightened
 * ```
 *
 * @module
 */
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { LaunchError } from "../../core/errors.ts";

/**
 * Create `dir` (0700; parents too) or check it: a directory (not a symlink) owned by this user;
 * group/other permissions are removed.
 * @throws LaunchError naming the directory and what is wrong.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new LaunchError(`promptCache.dir ${dir}: cannot create it: ${(e as Error).message}`, { cause: e });
    }
  }
  const symlink = `promptCache.dir ${dir} is a symlink (not followed: name the real directory)`;
  if (lstatSync(dir).isSymbolicLink()) throw new LaunchError(symlink);
  let fd: number;
  try {
    // O_NOFOLLOW (a link swapped in after the check): fails with ELOOP, or ENOTDIR with O_DIRECTORY: a symlink at `dir` fails (ELOOP) instead of being followed.
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || (code === "ENOTDIR" && lstatSync(dir).isSymbolicLink())) throw new LaunchError(symlink, { cause: e });
    throw new LaunchError(`promptCache.dir ${dir} ${code === "ENOTDIR" ? "is not a directory" : (e as Error).message}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isDirectory()) throw new LaunchError(`promptCache.dir ${dir} is not a directory`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new LaunchError(`promptCache.dir ${dir} belongs to uid ${st.uid}, not to you (uid ${uid}); name a directory of your own`);
    }
    if ((st.mode & 0o077) !== 0) fchmodSync(fd, 0o700);
  } finally {
    closeSync(fd);
  }
}

/** The `--slot-save-path` value of a llama-server argv, or null. */
export function slotSavePathOf(argv: readonly string[]): string | null {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--slot-save-path" && i + 1 < argv.length) return argv[i + 1]!;
    if (argv[i]!.startsWith("--slot-save-path=")) return argv[i]!.slice("--slot-save-path=".length);
  }
  return null;
}
