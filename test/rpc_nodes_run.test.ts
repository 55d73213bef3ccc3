/**
 * `spillway run`'s rpc nodes (issue 19, engine/launch/rpc_servers.ts) without llama.cpp: a node
 * that does not answer, a started server that dies at once, the warning for a node other hosts
 * can reach, and the probe listing every local GPU. The real rpc-server: `npm run test:rpc`.
 */
import { test } from "node:test";
import { createServer } from "node:net";
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import { exposureWarning, rpcServerArgv, startRpcNodes } from "../engine/launch/rpc_servers.ts";
import { probeHardware } from "../engine/hardware/probe.ts";

test("a node that does not answer fails the run before it starts, naming the node", async () => {
  const lines: string[] = [];
  await assertRejects(
    () => startRpcNodes([{ rpc: "127.0.0.1:1" }], { err: (s) => lines.push(s) }),
    Error,
    "hardware.nodes[0]: rpc 127.0.0.1:1: cannot connect",
  );
  assertEquals(lines, [], "loopback: no warning");
});

test("a node not on loopback is warned about: RPC has no authentication", async () => {
  const lines: string[] = [];
  // 0.0.0.0 reaches this host's closed port 1: refused at once.
  await assertRejects(() => startRpcNodes([{ rpc: "0.0.0.0:1" }], { err: (s) => lines.push(s) }), Error, "hardware.nodes[0]");
  assertEquals(lines.length, 1);
  assertMatch(lines[0]!, /not on loopback.*no authentication/);
  assertMatch(exposureWarning("10.0.0.2:50052", true), /anyone who can reach this port/);
});

test("a started rpc-server that exits at once is reported with its status; nothing is left", async () => {
  await assertRejects(
    () => startRpcNodes([{ rpc: "127.0.0.1:50999", start: true, binary: "/bin/false" }], { readyTimeoutMs: 5000 }),
    Error,
    "hardware.nodes[0]: rpc-server for 127.0.0.1:50999 exited with status 1",
  );
});

test("rpc-server argv: bound to the endpoint's host, its port and threads", () => {
  assertEquals(rpcServerArgv({ rpc: "127.0.0.1:50052", threads: 2 }, "rpc-server"), ["rpc-server", "-H", "127.0.0.1", "-p", "50052", "-t", "2"]);
  assertEquals(rpcServerArgv({ rpc: "192.168.1.5:6000", binary: "/opt/rpc-server" }, "rpc-server"), ["/opt/rpc-server", "-H", "192.168.1.5", "-p", "6000"]);
});

test("a node that answers HELLO is checked and reported", async () => {
  // Answers HELLO, DEVICE_COUNT (1) and GET_DEVICE_MEMORY, as rpc-server does.
  const server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const cmd = buf[0]!;
        const n = Number(buf.readBigUInt64LE(1));
        if (buf.length < 9 + n) return;
        buf = buf.subarray(9 + n);
        const out = cmd === 14 ? Buffer.concat([Buffer.from([7, 0, 0, 0]), Buffer.alloc(24)]) : cmd === 15 ? Buffer.from([1, 0, 0, 0]) : Buffer.alloc(16, 1);
        const h = Buffer.alloc(8);
        h.writeBigUInt64LE(BigInt(out.length));
        sock.write(Buffer.concat([h, out]));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  try {
    const endpoint = `127.0.0.1:${(server.address() as { port: number }).port}`;
    const nodes = await startRpcNodes([{ rpc: endpoint }]);
    assertEquals(nodes.started, []);
    assertEquals(nodes.answered.map((a) => [a.endpoint, a.devices.length]), [[endpoint, 1]]);
    await nodes.stop();
  } finally {
    server.close();
  }
});

test("the probe lists every local GPU with its free memory and PCIe link", async () => {
  const hw = await probeHardware({
    host: { ramBytes: 64 * 2 ** 30, availableRamBytes: 60 * 2 ** 30, cpuCores: 16, logicalCpus: 32, avx512: false, avx2: true },
    gpus: {
      via: "nvml",
      gpus: [
        { index: 0, name: "NVIDIA GeForce RTX 4090", totalBytes: 24 * 2 ** 30, freeBytes: 23 * 2 ** 30, pcieGen: 4, pcieWidth: 16 },
        { index: 1, name: "NVIDIA GeForce RTX 3090", totalBytes: 24 * 2 ** 30, freeBytes: 20 * 2 ** 30, pcieGen: 4, pcieWidth: 8 },
      ],
    },
  });
  assertEquals(hw.devices!.map((d) => [d.id, d.name, d.freeBytes]), [
    ["gpu0", "NVIDIA GeForce RTX 4090", 23 * 2 ** 30],
    ["gpu1", "NVIDIA GeForce RTX 3090", 20 * 2 ** 30],
  ]);
  assert(hw.devices![1]!.link.GBps < hw.devices![0]!.link.GBps, "x8 link slower than x16");
  assertEquals(hw.devices![0]!.memGBps, 1008);
});
