/**
 * The llama.cpp RPC client (issue 19) against an in-test server that frames messages as
 * ggml-rpc.cpp does (`| cmd | u64 size | payload |` in, `| u64 size | payload |` out), plus the
 * recipe side of rpc nodes: located errors and devices resolved by asking the server.
 * The real rpc-server is exercised by `npm run test:rpc` (test/rpc_e2e.rpc.ts).
 */
import { test } from "node:test";
import { createServer, type Server, type Socket } from "node:net";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { encodeRpcTensor, isLoopback, measureRpcLink, parseEndpoint, queryRpcNode, RPC_CMD, RPC_TENSOR_SIZE } from "../engine/hardware/rpc_client.ts";
import { parseRecipe } from "../engine/recipe/parse.ts";
import { resolveHardware } from "../engine/hardware/resolve.ts";

/** A server speaking protocol `major`: two devices, one buffer store. */
function fakeServer(major = 7): Promise<{ server: Server; endpoint: string; seen: number[] }> {
  const seen: number[] = [];
  const buffers = new Map<bigint, Buffer>();
  const server = createServer((sock: Socket) => {
    let data = Buffer.alloc(0);
    const reply = (payload: Buffer): void => {
      const h = Buffer.alloc(8);
      h.writeBigUInt64LE(BigInt(payload.length));
      sock.write(Buffer.concat([h, payload]));
    };
    sock.on("data", (d) => {
      data = Buffer.concat([data, d]);
      while (data.length >= 9) {
        const cmd = data[0]!;
        const size = Number(data.readBigUInt64LE(1));
        if (data.length < 9 + size) return;
        const p = data.subarray(9, 9 + size);
        data = data.subarray(9 + size);
        seen.push(cmd);
        if (cmd === RPC_CMD.HELLO) reply(Buffer.concat([Buffer.from([major, 0, 0, 0]), Buffer.alloc(24)]));
        else if (cmd === RPC_CMD.DEVICE_COUNT) reply(Buffer.from([2, 0, 0, 0]));
        else if (cmd === RPC_CMD.GET_DEVICE_MEMORY) {
          const dev = p.readUInt32LE(0);
          const r = Buffer.alloc(16);
          r.writeBigUInt64LE(BigInt((dev + 1) * 1000), 0);
          r.writeBigUInt64LE(BigInt((dev + 1) * 4000), 8);
          reply(r);
        } else if (cmd === RPC_CMD.ALLOC_BUFFER) {
          const n = Number(p.readBigUInt64LE(4));
          buffers.set(0x1000n, Buffer.alloc(n));
          const r = Buffer.alloc(16);
          r.writeBigUInt64LE(0x1000n, 0);
          r.writeBigUInt64LE(BigInt(n), 8);
          reply(r);
        } else if (cmd === RPC_CMD.BUFFER_GET_BASE) {
          const r = Buffer.alloc(8);
          r.writeBigUInt64LE(0x7000n, 0);
          reply(r);
        } else if (cmd === RPC_CMD.SET_TENSOR) {
          // | rpc_tensor | cache_flag u8 | offset u64 | data |: an I8 tensor in our buffer at its base.
          assertEquals(p.readUInt32LE(8), 24);
          const buf = buffers.get(p.readBigUInt64LE(12))!;
          assertEquals(p.readBigUInt64LE(220), 0x7000n);
          const bytes = p.subarray(RPC_TENSOR_SIZE + 9);
          assertEquals(p.readUInt32LE(20), bytes.length);
          bytes.copy(buf);
        } else if (cmd === RPC_CMD.GET_TENSOR) {
          const buf = buffers.get(p.readBigUInt64LE(12))!;
          reply(buf.subarray(0, Number(p.readBigUInt64LE(RPC_TENSOR_SIZE + 8))));
        } else if (cmd === RPC_CMD.FREE_BUFFER) buffers.delete(p.readBigUInt64LE(0));
        else sock.destroy();
      }
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, endpoint: `127.0.0.1:${(server.address() as { port: number }).port}`, seen })));
}

test("queryRpcNode: HELLO, then each device's free and total memory", async () => {
  const { server, endpoint, seen } = await fakeServer();
  try {
    const info = await queryRpcNode(endpoint);
    assertEquals(info.version, "7.0.0");
    assertEquals(info.devices, [{ index: 0, freeBytes: 1000, totalBytes: 4000 }, { index: 1, freeBytes: 2000, totalBytes: 8000 }]);
    assertEquals(seen[0], RPC_CMD.HELLO, "HELLO comes first");
  } finally {
    server.close();
  }
});

test("measureRpcLink writes a buffer, reads it back identical, frees it", async () => {
  const { server, endpoint, seen } = await fakeServer();
  try {
    const m = await measureRpcLink(endpoint, { pings: 5, bytes: 1 << 16, repetitions: 2 });
    assertEquals(m.bytes, 1 << 16);
    assert(m.rttMs.median > 0 && m.uploadGBps.median > 0 && m.downloadGBps.median > 0);
    assert(seen.includes(RPC_CMD.FREE_BUFFER), "the buffer is freed");
  } finally {
    server.close();
  }
});

test("another protocol major version and a closed port are errors naming the endpoint", async () => {
  const { server, endpoint } = await fakeServer(6);
  try {
    await assertRejects(() => queryRpcNode(endpoint), Error, "protocol 6.0.0");
  } finally {
    server.close();
  }
  await assertRejects(() => queryRpcNode("127.0.0.1:1", 2000), Error, "rpc 127.0.0.1:1: cannot connect");
});

test("endpoints: host:port checked; loopback told apart", () => {
  assertEquals(parseEndpoint("10.0.0.2:50052"), { host: "10.0.0.2", port: 50052 });
  assertEquals(parseEndpoint("[::1]:50052"), { host: "::1", port: 50052 });
  assertThrows(() => parseEndpoint("10.0.0.2"), Error, "not host:port");
  assertThrows(() => parseEndpoint("h:70000"), Error, "outside 1..65535");
  assert(isLoopback("127.0.0.1") && isLoopback("localhost") && isLoopback("::1"));
  assert(!isLoopback("0.0.0.0") && !isLoopback("192.168.1.2"));
  assertEquals(encodeRpcTensor(1n, 2n, 3).length, 296);
});

test("recipe hardware.nodes: a bad endpoint or a repeated one is located", () => {
  const bad = (nodes: unknown[]): string => {
    try {
      parseRecipe(JSON.stringify({ model: { id: "llama-3.1-8b", quant: "q8_0" }, runtime: "llama.cpp", hardware: { nodes } }), "r.json5");
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("accepted");
  };
  assertMatch(bad([{ rpc: "10.0.0.2" }]), /hardware\.nodes\[0\]\.rpc.*not host:port/s);
  assertMatch(bad([{ rpc: "10.0.0.2:1" }, { rpc: "10.0.0.2:1" }]), /hardware\.nodes\[1\]\.rpc.*also hardware\.nodes\[0\]/s);
  assertMatch(bad([{ rpc: "10.0.0.2:1", devices: [{ kind: "tpu", memoryBytes: 1 }] }]), /hardware\.nodes\[0\]\.devices\[0\]\.kind/);
});

test("nodes without devices are asked; one that does not answer is an error naming it", async () => {
  const r = parseRecipe(JSON.stringify({
    model: { id: "llama-3.1-8b", quant: "q8_0" },
    runtime: "llama.cpp",
    hardware: { profile: "rtx-4090-24gb", nodes: [{ rpc: "10.9.9.9:50052" }] },
  }), "r.json5");
  const hw = await resolveHardware(r.hardware, {
    queryRpc: async (endpoint) => ({ endpoint, version: "7.0.0", devices: [{ index: 0, freeBytes: 20 * 2 ** 30, totalBytes: 24 * 2 ** 30 }] }),
  });
  assertEquals(hw.devices!.map((d) => [d.id, d.where, d.endpoint ?? null]), [["rpc0", "rpc", "10.9.9.9:50052"], ["gpu0", "local", null]]);
  assertEquals(hw.devices![0]!.freeBytes, 20 * 2 ** 30);
  await assertRejects(
    () => resolveHardware(r.hardware, { queryRpc: (e) => queryRpcNode(e.replace("10.9.9.9:50052", "127.0.0.1:1"), 1000).then((x) => x) }),
    Error,
    "hardware.nodes[0]",
  );
});
