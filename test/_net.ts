/**
 * Loopback helpers shared by the tests that start servers (llama-server, rpc-server, fakes).
 *
 * @example
 * const port = await freePort(); // then start a server on 127.0.0.1:port
 * @module
 */
import { createServer } from "node:net";

/** A loopback port nothing listens on right now (closed again before use: the server binds it next). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
