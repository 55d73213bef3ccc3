// Parsing and small pure pieces of `spillway bench` and autotune.
import { test } from "node:test";
import { parseHelperOutput } from "../engine/hardware/measure/helper_output.ts";
import { summarize } from "../engine/hardware/measure/stats.ts";
import { pcieGenFromSpeed } from "../engine/hardware/measure/pcie.ts";
import { parseLlamaBenchJson, trialCounts } from "../engine/autotune/trials.ts";
import { formatBytes } from "../core/bytes.ts";
import { HardwareProbeError, LaunchError } from "../core/errors.ts";
import { assertEquals, assertThrows } from "./_assert.ts";

test("summarize: min/median/max, even and odd counts, bad input", () => {
  assertEquals(summarize([3, 1, 2], "GB/s"), { min: 1, median: 2, max: 3, unit: "GB/s" });
  assertEquals(summarize([4, 1, 3, 2], "ms"), { min: 1, median: 2.5, max: 4, unit: "ms" });
  assertThrows(() => summarize([], "GB/s"), RangeError, "no measurements");
  assertThrows(() => summarize([1, NaN], "GB/s"), RangeError, "not a finite number");
});

test("helper output: last line JSON, fields checked, errors name the helper", () => {
  const r = parseHelperOutput("cpu_bw", "warming up\n{\"threads\":4,\"bytes\":1024,\"gbps\":[10.5,11],\"checksum\":1}\n");
  assertEquals(r, { gbps: [10.5, 11], bytes: 1024, threads: 4 });
  assertEquals(parseHelperOutput("disk_bw", "{\"direct\":false,\"bytes\":8,\"gbps\":[1]}").direct, false);
  assertThrows(() => parseHelperOutput("cpu_bw", "Segmentation fault"), HardwareProbeError, "cpu_bw: output is not JSON");
  assertThrows(() => parseHelperOutput("disk_bw", "{\"bytes\":8,\"gbps\":[]}"), HardwareProbeError, "disk_bw: field gbps");
  assertThrows(() => parseHelperOutput("disk_bw", "{\"bytes\":8,\"gbps\":[-1]}"), HardwareProbeError, "positive numbers");
  assertThrows(() => parseHelperOutput("cpu_bw", "{\"gbps\":[1]}"), HardwareProbeError, "field bytes");
});

test("PCIe generation from sysfs link speed", () => {
  assertEquals(pcieGenFromSpeed("32.0 GT/s PCIe\n"), 5);
  assertEquals(pcieGenFromSpeed("16.0 GT/s PCIe"), 4);
  assertEquals(pcieGenFromSpeed("8.0 GT/s PCIe"), 3);
  assertEquals(pcieGenFromSpeed("2.5 GT/s PCIe"), 1);
  assertEquals(pcieGenFromSpeed("Unknown"), null);
});

test("llama-bench JSON: prompt and generation tests, log lines around, errors", () => {
  const out = `main: loading\n[\n  {"n_prompt": 512, "n_gen": 0, "avg_ts": 521.3, "stddev_ts": 4.1},\n  {"n_prompt": 0, "n_gen": 64, "avg_ts": 38.2}\n]\nllama_perf: done\n`;
  assertEquals(parseLlamaBenchJson(out), { prefillTps: 521.3, decodeTps: 38.2 });
  assertEquals(parseLlamaBenchJson(`[{"n_prompt":0,"n_gen":32,"avg_ts":12}]`), { prefillTps: 0, decodeTps: 12 });
  assertThrows(() => parseLlamaBenchJson("error: failed to load model"), LaunchError, "no JSON array");
  assertThrows(() => parseLlamaBenchJson("[{\"n_prompt\":512,\"avg_ts\":0}]"), LaunchError, "avg_ts > 0");
  assertThrows(() => parseLlamaBenchJson("[1,2"), LaunchError);
});

test("trial counts follow the workload and the time budget", () => {
  // Chat: full prompt, generation sized to ~40% of the budget at the predicted speed, repeated within budget.
  const chat = trialCounts({ promptTokens: 512, generatedTokens: 512 }, { prefillTps: 1000, decodeTps: 40 }, 8);
  assertEquals(chat.promptTokens, 512);
  assertEquals(chat.genTokens, 128);
  assertEquals(chat.repetitions, 2);
  // Long prompts are capped at 4096; short generations are not padded past the workload beyond 16.
  const rag = trialCounts({ promptTokens: 8192, generatedTokens: 8 }, { prefillTps: 500, decodeTps: 30 }, 8);
  assertEquals(rag.promptTokens, 4096);
  assertEquals(rag.genTokens, 16);
  assertEquals(rag.repetitions, 1);
  // Slow decode: fewer generated tokens, at least 16.
  assertEquals(trialCounts({ promptTokens: 0, generatedTokens: 256 }, { prefillTps: 0, decodeTps: 2 }, 8).genTokens, 16);
  assertEquals(trialCounts({ promptTokens: 128, generatedTokens: 0 }, { prefillTps: 100, decodeTps: 10 }, 8).genTokens, 0);
});

test("byte sizes print in binary units", () => {
  assertEquals(formatBytes(1024 ** 3, "short"), "1 GiB");
  assertEquals(formatBytes(1536 * 1024, "short"), "1.5 MiB");
  assertEquals(formatBytes(100, "short"), "100 B");
});
