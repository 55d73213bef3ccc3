/**
 * The one JSON POST the harness makes to a llama-server on loopback (completions, slot save and
 * restore): timed, with errors that say what was asked and why it failed.
 *
 * @example
 * ```ts
 * const { json, seconds } = await postJson(8080, "/completion", { prompt: [1, 2], n_predict: 4 }, 60_000, "POST /completion");
 * ```
 *
 * @module
 */

/** The harness's servers listen here only. */
export const HOST = "127.0.0.1";

/**
 * POSTs `body` as JSON to `path` on HOST:`port` and parses the answer. `what` names the request in
 * errors (a timeout, a refused connection, a non-2xx status, an answer that is not JSON).
 */
export async function postJson(port: number, path: string, body: unknown, timeoutMs: number, what = `POST ${path}`): Promise<{ json: unknown; seconds: number }> {
  const t0 = performance.now();
  let status: number;
  let text: string;
  try {
    const res = await fetch(`http://${HOST}:${port}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(Math.max(1, Math.round(timeoutMs))),
    });
    status = res.status;
    text = await res.text();
  } catch (e) {
    const err = e as Error;
    if (err.name === "TimeoutError" || err.name === "AbortError") throw new Error(`${what} got no answer within ${(timeoutMs / 1000).toFixed(0)} s`);
    throw new Error(`${what} failed: ${err.message}${err.cause ? ` (${(err.cause as Error).message ?? String(err.cause)})` : ""}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (status < 200 || status >= 300) throw new Error(`POST ${path}: HTTP ${status}: ${text.slice(0, 400)}`);
  try {
    return { json: JSON.parse(text) as unknown, seconds };
  } catch {
    throw new Error(`POST ${path}: not JSON: ${text.slice(0, 300)}`);
  }
}
