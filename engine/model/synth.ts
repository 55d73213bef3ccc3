/**
 * `synthesize`: writes a GGUF v3 file of a named shape with random weights that llama.cpp loads
 * and runs: complete architecture metadata, a gpt2-style byte-level vocabulary, quantized weights
 * with small scales (no overflow), random MoE routers (tokens pick varied experts), norms of 1.0.
 * Data is written from pre-generated random block pools with large writes, so a 30 GB file goes
 * at disk speed; `sparse` writes only the header and leaves the data as a hole.
 *
 * @module
 */

import { writeSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { ModelFileError } from "../../core/errors.ts";
import { type GgmlType, ggmlTypeByName } from "./ggml_types.ts";
import { GGUF_TYPE } from "./gguf.ts";
import { type GgufWriteValue, streamGgufHeader } from "./gguf_writer.ts";
import { getShape, listShapes, type ModelShape, shapeTensors, type TensorKind } from "./shapes.ts";

/** Quantizations `synthesize` writes. */
export type SynthQuant = "Q8_0" | "Q4_0" | "F16";

/** Options of synthesize. */
export interface SynthOptions {
  /** Shape id (see listShapes) or a shape object. */
  shape: string | ModelShape;
  quant: SynthQuant;
  /** Output path. */
  out: string;
  /** Write the header only and leave the tensor data as a hole (apparent size only). */
  sparse?: boolean;
  /** PRNG seed (default 1): the same seed writes the same file. */
  seed?: number;
  /** Override the vocabulary size (at least 258: 256 byte tokens + BOS + EOS). */
  vocabSize?: number;
  /** Called as data is written: bytes written so far and the file size. */
  onProgress?: (bytesDone: number, total: number) => void;
  /** Abort the write (e.g. on Ctrl-C): the partial file is removed and the promise rejects. */
  signal?: AbortSignal;
}

/** What synthesize wrote. */
export interface SynthResult {
  path: string;
  /** File size (apparent size for sparse files). */
  bytes: number;
}

const POOL_BYTES = 16 << 20;

/**
 * Bounds of the synth options: a vocabulary beyond any real model's (the largest have ~262k
 * tokens) would only make an absurd file; llama.cpp's token ids are int32 and its tokenizer holds
 * every token string in memory. The seed is a 32-bit PRNG state.
 */
export const SYNTH_LIMITS = { vocabMin: 258, vocabMax: 4_194_304, seedMax: 2 ** 32 - 1 } as const;

// llama_ftype values (include/llama.h).
const FILE_TYPE: Record<SynthQuant, number> = { F16: 1, Q4_0: 2, Q8_0: 7 };

/** Writes the file; on failure nothing is left at `out` (a temporary file is removed). */
export async function synthesize(opts: SynthOptions): Promise<SynthResult> {
  const shape0 = typeof opts.shape === "string" ? getShape(opts.shape) : opts.shape;
  if (!shape0) {
    throw new RangeError(`unknown shape '${opts.shape}'; known: ${listShapes().map((s) => s.id).join(", ")}`);
  }
  const quantType = ggmlTypeByName(opts.quant);
  if (!quantType || !["Q8_0", "Q4_0", "F16"].includes(opts.quant)) {
    throw new RangeError(`quantization '${opts.quant}' is not one synth writes (Q8_0, Q4_0, F16)`);
  }
  const vocab = opts.vocabSize ?? shape0.vocab;
  if (!Number.isInteger(vocab) || vocab < SYNTH_LIMITS.vocabMin || vocab > SYNTH_LIMITS.vocabMax) {
    throw new RangeError(`vocabSize ${vocab} is outside ${SYNTH_LIMITS.vocabMin}..${SYNTH_LIMITS.vocabMax} (256 bytes + BOS + EOS at least; no real model has more than ~262k tokens)`);
  }
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > SYNTH_LIMITS.seedMax) throw new RangeError(`seed ${seed} is outside 0..${SYNTH_LIMITS.seedMax}`);
  const shape: ModelShape = { ...shape0, vocab };
  const f32 = ggmlTypeByName("F32")!;

  const tensors = shapeTensors(shape).map((t) => ({
    name: t.name,
    shape: t.dims,
    type: t.kind === "weight" ? quantType : f32,
    kind: t.kind,
  }));
  for (const t of tensors) {
    if (t.shape[0] % t.type.blockSize !== 0) {
      throw new RangeError(`shape ${shape.id}: tensor ${t.name} row of ${t.shape[0]} is not a multiple of the ${t.type.name} block size`);
    }
  }
  const tmp = `${opts.out}.tmp-${process.pid}`;
  let fh;
  try {
    fh = await open(tmp, "w");
  } catch (e) {
    throw new ModelFileError(opts.out, `cannot create: ${(e as Error).message}`, { cause: e });
  }
  let ok = false;
  try {
    // The header streams to the file as it is encoded (a large vocabulary is never whole in memory).
    let pos0 = 0;
    const layout = streamGgufHeader(shapeMetadata(shape, opts.quant), tensors, (chunk) => {
      for (let off = 0; off < chunk.length;) off += writeSync(fh.fd, chunk, off, chunk.length - off, pos0 + off);
      pos0 += chunk.length;
    });
    const total = layout.fileSize;
    let done = layout.headerBytes;
    opts.onProgress?.(done, total);
    if (opts.sparse) {
      done = total;
    } else {
      const rng = xorshift(seed);
      const pools = new Map<string, Uint8Array>();
      const poolFor = (type: GgmlType, kind: TensorKind): Uint8Array => {
        const key = kind === "weight" ? type.name : kind;
        let p = pools.get(key);
        if (!p) {
          // No bigger than the largest tensor it feeds: small models stay fast to write.
          let largest = 0;
          for (let j = 0; j < tensors.length; j++) {
            const tj = tensors[j];
            if ((tj.kind === "weight" ? tj.type.name : tj.kind) === key) largest = Math.max(largest, layout.tensors[j].bytes);
          }
          pools.set(key, (p = makePool(type, kind, rng, largest)));
        }
        return p;
      };
      for (let i = 0; i < tensors.length; i++) {
        const t = tensors[i];
        const { offset, bytes } = layout.tensors[i];
        const pool = poolFor(t.type, t.kind);
        // Start each tensor at a random whole block of the pool so tensors differ.
        const blocks = pool.length / t.type.typeSize;
        let src = t.kind === "weight" || t.kind === "router" ? Math.floor(rng() * blocks) * t.type.typeSize : 0;
        let pos = offset;
        let left = bytes;
        while (left > 0) {
          opts.signal?.throwIfAborted();
          const n = Math.min(left, pool.length - src);
          await writeAll(fh, pool.subarray(src, src + n), pos);
          pos += n;
          left -= n;
          src = 0;
          done += n;
          opts.onProgress?.(done, total);
        }
      }
    }
    // Trailing padding (and the whole data section when sparse) becomes a hole.
    await fh.truncate(total);
    opts.onProgress?.(total, total);
    await fh.close();
    await rename(tmp, opts.out);
    ok = true;
    return { path: opts.out, bytes: total };
  } catch (e) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw e instanceof ModelFileError ? e : new ModelFileError(opts.out, `cannot write: ${(e as Error).message}`, { cause: e });
  } finally {
    if (!ok) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true }).catch(() => {});
    }
  }
}

async function writeAll(fh: Awaited<ReturnType<typeof open>>, buf: Uint8Array, pos: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos + off);
    if (bytesWritten <= 0) throw new Error(`short write at offset ${pos + off}`);
    off += bytesWritten;
  }
}

/** xorshift32 returning floats in [0, 1); `next32` in the pool fillers uses the raw state. */
function xorshift(seed: number): () => number {
  let s = (seed >>> 0) || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function randomBytes(out: Uint8Array, rng: () => number): void {
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = (rng() * 4294967296) >>> 0;
  for (let i = words.length * 4; i < out.length; i++) out[i] = (rng() * 256) | 0;
}

const F16_F = new Float32Array(1);
const F16_U = new Uint32Array(F16_F.buffer);

/** IEEE half from a float (round to nearest; values here are small normals). */
export function toF16(v: number): number {
  F16_F[0] = v;
  const x = F16_U[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp <= 0) return sign; // flush tiny values to zero
  if (exp >= 31) return sign | 0x7c00;
  mant = (mant + 0x1000) >>> 13;
  return sign | ((exp << 10) + mant);
}

function makePool(type: GgmlType, kind: TensorKind, rng: () => number, largest: number): Uint8Array {
  const pool = new Uint8Array(Math.floor(Math.min(POOL_BYTES, Math.max(largest, 4096)) / type.typeSize) * type.typeSize);
  const view = new DataView(pool.buffer);
  if (kind === "norm") {
    new Float32Array(pool.buffer).fill(1.0);
  } else if (kind === "bias") {
    // zeros
  } else if (kind === "router") {
    const f = new Float32Array(pool.buffer);
    for (let i = 0; i < f.length; i++) f[i] = (rng() * 2 - 1) * 0.1;
  } else if (type.name === "F16") {
    // Random halves with |x| in [2^-10, 2^-5): sign, exponent 5..9, random mantissa.
    const h = new Uint16Array(pool.buffer);
    for (let i = 0; i < h.length; i++) {
      const r = (rng() * 4294967296) >>> 0;
      h[i] = ((r & 1) << 15) | ((5 + ((r >>> 1) % 5)) << 10) | ((r >>> 4) & 0x3ff);
    }
  } else {
    // Q8_0 / Q4_0: random quants, then a small f16 scale at the start of every block.
    randomBytes(pool, rng);
    const base = type.name === "Q8_0" ? 2.7e-4 : 2.7e-4 * 16; // Q4_0 quants span 16x less
    for (let o = 0; o < pool.length; o += type.typeSize) {
      view.setUint16(o, toF16(base * (0.5 + rng())), true);
    }
  }
  return pool;
}

/** GPT-2's byte -> printable unicode mapping (bytes_to_unicode), used for byte-level BPE tokens. */
function byteTokens(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let n = 0;
  const out: string[] = [];
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + n++));
  return out;
}

/** The GGUF metadata synth writes for `shape` (architecture keys of src/llama-arch.cpp, tokenizer). */
export function shapeMetadata(shape: ModelShape, quant: SynthQuant): Map<string, GgufWriteValue> {
  const m = new Map<string, GgufWriteValue>();
  const a = shape.architecture;
  const u32 = (k: string, v: number) => m.set(k, { type: GGUF_TYPE.UINT32, value: v });
  const f32 = (k: string, v: number) => m.set(k, { type: GGUF_TYPE.FLOAT32, value: v });
  const str = (k: string, v: string) => m.set(k, { type: GGUF_TYPE.STRING, value: v });
  str("general.architecture", a);
  str("general.type", "model");
  str("general.name", `spillway synthetic ${shape.id}`);
  u32("general.file_type", FILE_TYPE[quant]);
  u32("general.quantization_version", 2);
  u32(`${a}.vocab_size`, shape.vocab);
  u32(`${a}.context_length`, shape.contextLength);
  u32(`${a}.embedding_length`, shape.embedding);
  u32(`${a}.block_count`, shape.layers);
  u32(`${a}.feed_forward_length`, shape.ffn);
  u32(`${a}.attention.head_count`, shape.heads);
  u32(`${a}.attention.head_count_kv`, shape.headsKv);
  f32(`${a}.rope.freq_base`, shape.ropeFreqBase);
  f32(`${a}.attention.layer_norm_rms_epsilon`, shape.rmsEps);
  if (a === "deepseek2") {
    const kvLora = shape.kvLoraRank ?? 0, rope = shape.qkRopeDim ?? 0;
    u32(`${a}.leading_dense_block_count`, shape.leadingDense ?? 0);
    if (shape.qLoraRank) u32(`${a}.attention.q_lora_rank`, shape.qLoraRank);
    u32(`${a}.attention.kv_lora_rank`, kvLora);
    u32(`${a}.attention.key_length`, kvLora + rope);
    u32(`${a}.attention.value_length`, kvLora);
    u32(`${a}.attention.key_length_mla`, (shape.qkNopeDim ?? 0) + rope);
    u32(`${a}.attention.value_length_mla`, shape.vHeadDim ?? 0);
    u32(`${a}.rope.dimension_count`, rope);
    u32(`${a}.expert_shared_count`, shape.sharedExperts ?? 0);
    f32(`${a}.expert_weights_scale`, shape.expertWeightsScale ?? 1);
    m.set(`${a}.expert_weights_norm`, { type: GGUF_TYPE.BOOL, value: shape.expertWeightsNorm ?? false });
    u32(`${a}.expert_gating_func`, shape.expertGatingFunc ?? 1);
  } else {
    u32(`${a}.attention.key_length`, shape.headDim);
    u32(`${a}.attention.value_length`, shape.headDim);
    u32(`${a}.rope.dimension_count`, shape.headDim);
  }
  if (shape.experts > 0) {
    u32(`${a}.expert_count`, shape.experts);
    u32(`${a}.expert_used_count`, shape.expertsUsed);
    u32(`${a}.expert_feed_forward_length`, shape.expertFfn);
  }
  // gpt2-style byte-level BPE vocabulary: 256 byte tokens, BOS, EOS, fillers; no merges, so text
  // tokenizes to bytes.
  // Made as they are written (a multi-million vocabulary is never a JS array).
  const bytes = byteTokens();
  const tokens = function* (): Generator<string> {
    yield* bytes;
    yield "<|startoftext|>";
    yield "<|endoftext|>";
    for (let i = 258; i < shape.vocab; i++) yield `<|f${i}|>`;
  };
  const types = function* (): Generator<number> {
    for (let i = 0; i < shape.vocab; i++) yield i === 256 || i === 257 ? 3 : 1; // 1 normal, 3 control
  };
  str("tokenizer.ggml.model", "gpt2");
  str("tokenizer.ggml.pre", "default");
  m.set("tokenizer.ggml.tokens", { type: GGUF_TYPE.ARRAY, itemType: GGUF_TYPE.STRING, length: shape.vocab, value: { [Symbol.iterator]: tokens } });
  m.set("tokenizer.ggml.token_type", { type: GGUF_TYPE.ARRAY, itemType: GGUF_TYPE.INT32, length: shape.vocab, value: { [Symbol.iterator]: types } });
  m.set("tokenizer.ggml.merges", { type: GGUF_TYPE.ARRAY, itemType: GGUF_TYPE.STRING, value: [] });
  u32("tokenizer.ggml.bos_token_id", 256);
  u32("tokenizer.ggml.eos_token_id", 257);
  m.set("tokenizer.ggml.add_bos_token", { type: GGUF_TYPE.BOOL, value: true });
  return m;
}
