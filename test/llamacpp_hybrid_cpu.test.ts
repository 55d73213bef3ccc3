// Issue 22: the hybrid MoE split of the patch set computes the same logits as stock llama.cpp.
// A CPU-only build of the patched llama-perplexity (test/_native.ts's patchedCpuBuild, cached, so the
// first runtime builds it and the others reuse it) runs tiny
// MoE models at one token per batch with LLAMA_MOE_HYBRID_ANY_HOST=1, where both parts of every
// block run on the CPU; the KL divergence against the stock path must be ~0. The graph's node count
// shows that the split was built (a check that cannot tell would pass for a patch that does nothing).
// The build has llama.cpp's RPC backend too: a local ggml-rpc-server is a second backend (a remote
// device of GPU type), so the copy mode's device part really runs on another backend, with the
// scheduler's expert copies, patch 0002's look-ahead over its splits and patch 0004's helper thread
// that launches them (the second test), and on GLM-4.7-Flash's real block dimensions the bytes the
// scheduler copies per token are checked to the byte for each share (the fifth).
// The GPU side (the part read over PCIe) is checked on the GPU machine by the bench harness.
import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasProgram } from "../core/native_build.ts";
import { type SynthQuant, synthesize } from "../engine/model/synth.ts";
import { getShape } from "../engine/model/shapes.ts";
import { ggmlTensorBytes, ggmlTypeByName } from "../engine/model/ggml_types.ts";
import { assert, assertEquals, assertGreater } from "./_assert.ts";
import { startRpcNodes } from "../engine/launch/rpc_servers.ts";
import { runStep } from "../bench/harness/proc.ts";
import { hasMatvecStreams, patchedCpuBuild } from "./_native.ts";
import { freePort } from "./_net.ts";

/** Deterministic filler text: reference and candidate read the same tokens. */
function text(): string {
  const words = "the of and to in is that for on with as by at from it be this are was an or which".split(" ");
  let x = 7;
  const out: string[] = [];
  for (let i = 0; i < 1500; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out.push(`${words[x % words.length]}${x % 97}`);
  }
  return out.join(" ");
}

interface PplRun {
  /** Nodes of the one-token graph (sched_reserve's first figure). */
  nodes: number;
  /** Backend splits of the one-token graph, when the log says. */
  splits?: number;
  kld?: number;
  sameTopPct?: number;
  /** The context's log says the split is on. */
  saysHybrid: boolean;
  /** How the log says the GPU part reads its experts ("copy", "inplace"), when it says. */
  gpuRead?: "copy" | "inplace";
  /** The scheduler's debug log says a helper thread launched device splits beside a CPU split (patch 0004). */
  launchThread: boolean;
  /** ggml-cpu's debug log says a one-token Q8_0 mat-vec ran as four row streams (patch 0006). */
  streams: boolean;
  /** Bytes of host weights the scheduler copied to devices per graph (GGML_SCHED_TIMING=1, patch 0007). */
  weightBytes?: number;
}

async function perplexity(bin: string, model: string, textFile: string, base: string, env: Record<string, string>, kld: boolean, extra: string[] = []): Promise<PplRun> {
  const args = ["-m", model, "-f", textFile, "-c", "128", "--chunks", "2", "-t", "2", "-ub", "1", "-lv", "4", "--kl-divergence-base", base, ...extra];
  if (kld) args.push("--kl-divergence");
  // Asynchronous, so the event loop keeps reading a local rpc-server's output: blocked, the server
  // stops in a write to its full stdout pipe and the next client waits forever. The time limit
  // turns any other hang into a failure. One run each: patch 0009 flushes llama-perplexity's log
  // at exit, where the KL statistics are. Without it they can be lost (runUntilStats says why; 18
  // runs of 25 beside two busy loops, bench/harness/kl_log_loss.ts), so every KL run below checks
  // that patch too.
  const r = await runStep([bin, ...args], { env, timeoutS: 120 });
  assertEquals(r.code, 0, `llama-perplexity ${args.join(" ")}: exit ${r.code}${r.timedOut ? " (timed out)" : ""}\n${r.stderr.slice(-2000)}`);
  // The figures are split between stdout and the log (stderr).
  const out = r.stdout + r.stderr;
  const run = parse(out);
  if (kld) assert(run.kld !== undefined && run.sameTopPct !== undefined, `llama-perplexity ${args.join(" ")}: no KL statistics in its output (patch 0009 flushes its log at exit); its last lines:\n${out.slice(-1500)}`);
  return run;
}

function parse(out: string): PplRun {
  const nodes = /sched_reserve: graph[^:]*: nodes = (\d+)/.exec(out);
  // "graph: nodes = 112, splits = 6" or, when the one-token and batch graphs differ, "graph (pp bs=1, tg bs=16): nodes = 123 / 112, splits = 10 / 6"
  const splits = /sched_reserve: graph[^:]*: nodes = \d+(?: \/ \d+)?, splits = (\d+)/.exec(out);
  const kld = /^Mean +KLD: +(-?[\d.e+-]+)/m.exec(out);
  const top = /^Same top p: +([\d.]+)/m.exec(out);
  const weightBytes = /ggml_sched_timing: weight bytes copied to devices per graph (\d+)/.exec(out);
  return {
    nodes: nodes ? Number(nodes[1]) : NaN,
    ...(splits ? { splits: Number(splits[1]) } : {}),
    kld: kld ? Number(kld[1]) : undefined,
    sameTopPct: top ? Number(top[1]) : undefined,
    saysHybrid: /llama_context: hybrid MoE experts +=/.test(out),
    launchThread: /a helper thread launches device splits \d+\.\.\d+ while CPU split \d+ computes/.test(out),
    streams: /GGML_CPU_MATVEC_STREAMS=4: one-token Q8_0 mat-vec as four row streams per thread/.test(out),
    ...(weightBytes ? { weightBytes: Number(weightBytes[1]) } : {}),
    ...(/GPU reads copies in VRAM/.test(out) ? { gpuRead: "copy" as const } : /GPU reads host memory in place/.test(out) ? { gpuRead: "inplace" as const } : {}),
  };
}

/** A tiny MoE model of each shape (qwen3moe and deepseek2), at `quant`, in a temporary folder. */
interface TinyModel {
  shape: string;
  model: string;
  /** The KL-divergence base file the stock run writes and the others read. */
  base: string;
  textFile: string;
}

/**
 * Runs `fn` for tiny-moe and tiny-mla synthesized at `quant`, beside the filler text; removes the folder
 * after. `expertFfn` widens their experts (32 rows: one Q8_0 block, too few to split at a block).
 */
async function forEachTinyModel(quant: SynthQuant, fn: (m: TinyModel) => Promise<void>, expertFfn?: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "spillway-tiny-moe-"));
  try {
    const textFile = join(dir, "text.txt");
    writeFileSync(textFile, text());
    for (const shape of ["tiny-moe", "tiny-mla"]) {
      const model = join(dir, `${shape}.gguf`);
      await synthesize({ shape: expertFfn ? { ...getShape(shape)!, expertFfn } : shape, quant, out: model });
      await fn({ shape, model, base: join(dir, `${shape}.kld`), textFile });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const canBuild = hasProgram("cmake") && hasProgram("g++");

test("hybrid MoE split (CPU-only build): same logits as the stock path for every GPU share", { skip: canBuild ? false : "cmake or g++ missing", timeout: 3_600_000 }, async () => {
  const bin = join(patchedCpuBuild(), "llama-perplexity");
  // F16: a row split at any row (Q8_0 splits whole 32-row blocks; the tiny shapes have 32 expert rows).
  await forEachTinyModel("F16", async ({ shape, model, base, textFile }) => {
    const stock = await perplexity(bin, model, textFile, base, {}, false);
    assert(Number.isFinite(stock.nodes), `${shape}: no graph node count in llama-perplexity's log`);
    assert(!stock.saysHybrid, `${shape}: the stock run's log says hybrid`);
    // The copy mode (LLAMA_MOE_HYBRID_GPU_READ=copy) builds the same graph with the GPU part's experts
    // unflagged; here only its switch and log are checked (the copy itself needs a device).
    // k = 2 experts per token of 32 rows: 0.5 is one whole expert each; 0.25 (0.5 experts) gives the GPU
    // rows 0-15 of the first expert and the CPU the rest of it and the second; 0.75 the GPU the first
    // expert and rows 0-15 of the second; 0.3 (0.6 experts) rows 0-18 (patch 0008).
    const nodes = new Map<string, number>();
    for (const [share, read] of [["0.25", undefined], ["0.5", undefined], ["0.75", undefined], ["0.3", undefined], ["1.0", undefined], ["0.5", "copy"], ["0.75", "copy"]] as const) {
      const env: Record<string, string> = { LLAMA_MOE_HYBRID_ANY_HOST: "1", LLAMA_MOE_HYBRID_GPU_FRACTION: share, ...(read ? { LLAMA_MOE_HYBRID_GPU_READ: read } : {}) };
      const r = await perplexity(bin, model, textFile, base, env, true);
      assertEquals(r.gpuRead, read ?? "inplace", `${shape} share ${share}: the log's GPU read mode`);
      // Share 1.0 has one part (all rows read by the "GPU"): the stock graph's size.
      if (share !== "1.0") assert(r.nodes > stock.nodes, `${shape} share ${share}: ${r.nodes} graph nodes, stock ${stock.nodes}: the split was not built`);
      if (!read) nodes.set(share, r.nodes);
      assert(r.saysHybrid, `${shape} share ${share}: the log does not say the split is on`);
      assert(r.kld !== undefined && r.sameTopPct !== undefined, `${shape} share ${share}: no KLD in the output`);
      assert(Math.abs(r.kld!) < 1e-5, `${shape} share ${share}: mean KLD ${r.kld}`);
      assertEquals(r.sameTopPct, 100, `${shape} share ${share}: same top token ${r.sameTopPct}%`);
    }
    // A boundary expert split by rows is a part of its own on each side: more nodes than whole experts
    // (without patch 0008 the shares round to whole experts and build 0.5's graph).
    for (const share of ["0.25", "0.75", "0.3"]) {
      assertGreater(nodes.get(share)!, nodes.get("0.5")!, `${shape} share ${share}: as many graph nodes as whole experts: no boundary rows`);
    }
  });
});

test("hybrid MoE split, copy mode, device part on a second backend (local RPC server): same logits as stock, overlap on and off", { skip: canBuild ? false : "cmake or g++ missing", timeout: 3_600_000 }, async () => {
  const binDir = patchedCpuBuild();
  const bin = join(binDir, "llama-perplexity");
  const endpoint = `127.0.0.1:${await freePort()}`;
  // spillway's own launcher of local rpc-servers (loopback, one thread: the tiny models need no
  // more); it waits for the server's RPC answer and stops it.
  const server = await startRpcNodes([{ rpc: endpoint, start: true, threads: 1 }], { binary: join(binDir, "ggml-rpc-server") });
  try {
    // Every block on the RPC device, the routed experts of both blocks in host memory (CPU backend):
    // the hybrid split's device part runs on the RPC device, its experts copied there by the scheduler.
    const placement = ["--rpc", endpoint, "-ngl", "99", "-ncmoe", "2", "-lm", "none"];
    await forEachTinyModel("F16", async ({ shape, model, base, textFile }) => {
      await perplexity(bin, model, textFile, base, {}, false); // the reference: stock, CPU only
      const stock = await perplexity(bin, model, textFile, base, {}, true, placement);
      assert(stock.splits !== undefined && stock.splits > 1, `${shape}: stock over RPC has ${stock.splits} splits: the RPC device was not used`);
      // Overlap on, its device splits launched by the helper thread (the default) or by the computing
      // thread first (GGML_SCHED_LAUNCH_THREAD=0); overlap off.
      // Shares 0.25 and 0.75 split a boundary expert by rows (patch 0008): the scheduler copies only
      // the rows (and columns) its views cover of each used expert, and reads the ids behind the two
      // parts' views back once (patch 0007; copying whole experts of a view runs past its end).
      const modes: [string, Record<string, string>, boolean, string][] = [
        ["on, helper thread", {}, true, "0.5"],
        ["on, no helper thread", { GGML_SCHED_LAUNCH_THREAD: "0" }, false, "0.5"],
        ["off", { GGML_SCHED_NO_OVERLAP: "1" }, false, "0.5"],
        ["on, helper thread", {}, true, "0.25"],
        ["on, helper thread", {}, true, "0.75"],
      ];
      const copied = new Map<string, number>();
      for (const [overlap, switches, helper, share] of modes) {
        const env: Record<string, string> = { LLAMA_MOE_HYBRID_ANY_HOST: "1", LLAMA_MOE_HYBRID_GPU_FRACTION: share, LLAMA_MOE_HYBRID_GPU_READ: "copy", GGML_SCHED_TIMING: "1", ...switches };
        const r = await perplexity(bin, model, textFile, base, env, true, placement);
        const what = `${shape} copy mode over RPC, share ${share}, overlap ${overlap}`;
        assert(r.weightBytes !== undefined && r.weightBytes > 0, `${what}: no weight bytes copied (GGML_SCHED_TIMING's figure ${r.weightBytes})`);
        if (!copied.has(share)) copied.set(share, r.weightBytes!);
        assertEquals(r.gpuRead, "copy", `${what}: the log's read mode`);
        assertEquals(r.launchThread, helper, `${what}: the log ${r.launchThread ? "says" : "does not say"} a helper thread launched device splits`);
        // The device part adds splits: per block one per expert tensor (each with its copy) and the sum's.
        assert(r.splits !== undefined && r.splits > stock.splits!, `${what}: ${r.splits} splits, stock ${stock.splits}: the split was not built on the device`);
        assert(r.kld !== undefined && r.sameTopPct !== undefined, `${what}: no KLD in the output`);
        assert(Math.abs(r.kld!) < 1e-5, `${what}: mean KLD ${r.kld}`);
        assertEquals(r.sameTopPct, 100, `${what}: same top token ${r.sameTopPct}%`);
      }
      // The device part's copies per token follow its share: half an expert (its gate and up rows, the
      // down matrix's span) < one expert < one and a half (< two). Copying whole experts of a view, or
      // the whole tensor for the second view of a split, copies more than a whole expert's bytes.
      assertGreater(copied.get("0.5")!, copied.get("0.25")!, `${shape}: bytes copied per graph at 0.25 (${copied.get("0.25")}) not below 0.5's`);
      assertGreater(copied.get("0.75")!, copied.get("0.5")!, `${shape}: bytes copied per graph at 0.75 not above 0.5's`);
      assertGreater(copied.get("0.5")! * 2, copied.get("0.75")!, `${shape}: bytes copied per graph at 0.75 (${copied.get("0.75")}) not below twice 0.5's (${copied.get("0.5")})`);
    });
  } finally {
    await server.stop();
  }
});

test("four CPU row streams (patch 0006): Q8_0 MoE models at one token per batch give stock's logits, and the streams ran", { skip: !canBuild ? "cmake or g++ missing" : !hasMatvecStreams() ? "no AVX2: the kernel is not built here" : false, timeout: 3_600_000 }, async () => {
  const bin = join(patchedCpuBuild(), "llama-perplexity");
  // Q8_0: the switch covers Q8_0 experts only. At 2 threads each thread's rows of an expert (16 of
  // 32, 32 of 64) are split into four streams.
  await forEachTinyModel("Q8_0", async ({ shape, model, base, textFile }) => {
    const stock = await perplexity(bin, model, textFile, base, {}, false);
    assert(!stock.streams, `${shape}: the stock run's log says four row streams`);
    const r = await perplexity(bin, model, textFile, base, { GGML_CPU_MATVEC_STREAMS: "4" }, true);
    assert(r.streams, `${shape}: the log does not say the four row streams ran`);
    assert(r.kld !== undefined && r.sameTopPct !== undefined, `${shape}: no KLD in the output`);
    // The same products, summed in the same order per row: the logits match to rounding.
    assert(Math.abs(r.kld!) < 1e-6, `${shape}: mean KLD ${r.kld}`);
    assertEquals(r.sameTopPct, 100, `${shape}: same top token ${r.sameTopPct}%`);
    // Another value is stock.
    assert(!(await perplexity(bin, model, textFile, base, { GGML_CPU_MATVEC_STREAMS: "2" }, false)).streams, `${shape}: GGML_CPU_MATVEC_STREAMS=2 ran the streams`);
  });
});

test("hybrid MoE split at a boundary expert, Q8_0 (rows split at a block), with and without four CPU row streams: stock's logits", { skip: canBuild ? false : "cmake or g++ missing", timeout: 3_600_000 }, async () => {
  const bin = join(patchedCpuBuild(), "llama-perplexity");
  // Experts of 64 rows, two Q8_0 blocks per down row: 0.25 of 2 experts gives the GPU rows 0-31 of the
  // first (its down columns from byte 0, the CPU's from the second block), 0.75 the first expert and
  // rows 0-31 of the second. The CPU part reads its boundary rows and down columns through views
  // (strided rows), with the four-stream kernel too where it is built (the GLM run's configuration).
  const streams = hasMatvecStreams() ? [false, true] : [false];
  await forEachTinyModel("Q8_0", async ({ shape, model, base, textFile }) => {
    const stock = await perplexity(bin, model, textFile, base, {}, false);
    const whole = await perplexity(bin, model, textFile, base, { LLAMA_MOE_HYBRID_ANY_HOST: "1", LLAMA_MOE_HYBRID_GPU_FRACTION: "0.5" }, false);
    for (const share of ["0.25", "0.75"]) {
      for (const s of streams) {
        const env: Record<string, string> = { LLAMA_MOE_HYBRID_ANY_HOST: "1", LLAMA_MOE_HYBRID_GPU_FRACTION: share, ...(s ? { GGML_CPU_MATVEC_STREAMS: "4" } : {}) };
        const r = await perplexity(bin, model, textFile, base, env, true);
        const what = `${shape} Q8_0 share ${share}${s ? " with streams" : ""}`;
        assertGreater(r.nodes, whole.nodes, `${what}: ${r.nodes} graph nodes, whole experts ${whole.nodes}, stock ${stock.nodes}: no boundary rows`);
        assertEquals(r.streams, s, `${what}: the log ${r.streams ? "says" : "does not say"} the streams ran`);
        assert(r.kld !== undefined && Math.abs(r.kld) < 1e-5, `${what}: mean KLD ${r.kld}`);
        assertEquals(r.sameTopPct, 100, `${what}: same top token ${r.sameTopPct}%`);
      }
    }
  }, 64);
});

test("hybrid MoE split, copy mode over RPC, GLM-4.7-Flash's block shape: the scheduler copies exactly the GPU part's bytes per token", { skip: canBuild ? false : "cmake or g++ missing", timeout: 3_600_000 }, async () => {
  // The real shape's block dimensions (2048 wide, experts of 1536 rows, 4 used per token, Q8_0), with 16
  // experts instead of 64 and 2 blocks (the first dense), a 300 MB file: each decoded token's copies
  // are known to the byte. The GPU run of 2026-12-08 decoded at 3 t/s because a boundary's gate view
  // was copied whole (64 experts, 214 MB a block); this pins every share's bytes instead of an
  // ordering. llama-bench's decode computes every block for every token (llama-perplexity skips the
  // last block for tokens it scores no logits for).
  const binDir = patchedCpuBuild();
  const shape = { ...getShape("glm-4.7-flash")!, layers: 2, experts: 16, vocab: 4096 };
  const dir = mkdtempSync(join(tmpdir(), "spillway-glm-blocks-"));
  const endpoint = `127.0.0.1:${await freePort()}`;
  const server = await startRpcNodes([{ rpc: endpoint, start: true, threads: 1 }], { binary: join(binDir, "ggml-rpc-server") });
  try {
    const model = join(dir, "glm-2-blocks.gguf");
    await synthesize({ shape, quant: "Q8_0", out: model });
    // An expert's gate, up and down matrices are each n_embd x expertFfn.
    const q8 = ggmlTypeByName("Q8_0")!;
    const rowBytes = (values: number) => ggmlTensorBytes(q8, [values]);
    const expert = shape.embedding * rowBytes(shape.expertFfn);
    // Each copy ends 512 bytes further (MMQ's padding), except at the last expert.
    const pad = 512;
    const moeBlocks = shape.layers - shape.leadingDense!;
    const perBlock = (share: number) => {
      const gpuExperts = share * shape.expertsUsed;
      const whole = Math.floor(gpuExperts);
      // The boundary's rows: the share's fraction of an expert, at the down matrix's blocks.
      const rows = Math.round(((gpuExperts - whole) * shape.expertFfn) / q8.blockSize) * q8.blockSize;
      // With LLAMA_MOE_HYBRID_ANY_HOST every part is copied (an RPC device cannot read host memory in
      // place): the rows of gate and up, and the down matrix's span from its first row's first column
      // to its last row's column `rows` (on a GPU the down columns are read in place instead).
      const boundary = rows === 0 ? 0 : 2 * (rows * rowBytes(shape.embedding) + pad) + (shape.embedding - 1) * rowBytes(shape.expertFfn) + rowBytes(rows) + pad;
      return 3 * whole * (expert + pad) + boundary;
    };
    for (const share of [0.25, 0.3125, 0.375, 0.5]) {
      const env: Record<string, string> = { LLAMA_MOE_HYBRID_ANY_HOST: "1", LLAMA_MOE_HYBRID_GPU_FRACTION: String(share), LLAMA_MOE_HYBRID_GPU_READ: "copy", GGML_SCHED_TIMING: "1" };
      const args = [join(binDir, "llama-bench"), "-m", model, "-p", "0", "-n", "4", "-r", "1", "-t", "2", "--rpc", endpoint, "-ngl", "99", "-ncmoe", String(shape.layers), "-lm", "none"];
      const r = await runStep(args, { env, timeoutS: 300 });
      assertEquals(r.code, 0, `llama-bench at share ${share}: exit ${r.code}\n${r.stderr.slice(-2000)}`);
      const got = parse(r.stdout + r.stderr).weightBytes;
      const want = moeBlocks * perBlock(share);
      assert(got !== undefined, `share ${share}: no weight bytes in llama-bench's log`);
      // At most every copy of a token without its padding (the last expert among the GPU part's).
      assert(got <= want && got >= want - moeBlocks * 6 * pad, `share ${share}: ${got} bytes copied per token, expected ${want} (${(want / 1e6).toFixed(2)} MB: ${share * shape.expertsUsed} experts of ${shape.expertsUsed} in ${moeBlocks} blocks)`);
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("hybrid MoE split: the log parser reads llama-perplexity's figures", () => {
  const r = parse("I llama_context: hybrid MoE experts    = on, GPU share 0.5, GPU reads copies in VRAM (for experts in pinned host memory, one-token batches)\nI sched_reserve: graph (pp bs=1, tg bs=16): nodes = 123 / 112, splits = 1 / 1\nMean    KLD:  -0.000000 ±   0.000000\nSame top p: 99.500 ± 0.1 %\n");
  assertEquals(r, { nodes: 123, splits: 1, kld: -0, sameTopPct: 99.5, saysHybrid: true, launchThread: false, streams: false, gpuRead: "copy" });
  assert(parse("I ggml_compute_forward_mul_mat_id_one_chunk: GGML_CPU_MATVEC_STREAMS=4: one-token Q8_0 mat-vec as four row streams per thread\n").streams);
  assert(parse("D ggml_backend_sched_compute_splits: a helper thread launches device splits 5..7 while CPU split 4 computes\n").launchThread);
  assertEquals(parse("I sched_reserve: graph: nodes = 112, splits = 6, input objects = 4\n").splits, 6);
  assertEquals(parse("ggml_sched_timing: weight bytes copied to devices per graph 13824\n").weightBytes, 13824);
  assert(Number.isNaN(parse("nothing").nodes));
});
