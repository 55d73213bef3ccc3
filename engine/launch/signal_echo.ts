/**
 * One Ctrl-C can reach spillway twice: from the terminal (spillway is in its foreground process
 * group) and again from `npx`, which forwards the SIGINT it got itself to its child. A repeat of
 * the same signal within {@link SIGNAL_ECHO_MS} is that echo and counts once, so a single keypress
 * is not taken for the second, forcing one (which kills the runtime without its clean shutdown).
 *
 * @example
 * ```ts
 * const echo = signalEcho();
 * process.on("SIGINT", () => { if (echo("SIGINT")) return; stop(); });
 * ```
 *
 * @module
 */

/** Milliseconds within which a repeat of the same signal is taken for an echo. */
export const SIGNAL_ECHO_MS = 300;

/** A detector, one per handler set: true when `sig` repeats its previous delivery within {@link SIGNAL_ECHO_MS}. */
export function signalEcho(): (sig: string) => boolean {
  const last = new Map<string, number>();
  return (sig) => {
    const now = Date.now();
    const prev = last.get(sig);
    last.set(sig, now);
    return prev !== undefined && now - prev < SIGNAL_ECHO_MS;
  };
}
