/**
 * GGML tensor types: id, name, block size (elements per block) and type size (bytes per block).
 *
 * The numbers are llama.cpp's `GGML_QUANT_SIZES` table (gguf-py/gguf/constants.py, which mirrors
 * `ggml_type_traits` in ggml/src/ggml.c) and the ids are `enum ggml_type` (ggml/include/ggml.h),
 * as of the llama.cpp bundled with node-llama-cpp 3.22. `QK_K` is 256.
 *
 * @module
 */

/** Block layout of one GGML type. */
export interface GgmlType {
  /** `enum ggml_type` value as stored in GGUF tensor infos. */
  id: number;
  /** Name as llama.cpp prints it (`Q8_0`, `F16`, ...). */
  name: string;
  /** Elements per block. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

const QK_K = 256;

// [id, name, block size, type size] from GGML_QUANT_SIZES (gguf-py/gguf/constants.py).
const TABLE: [number, string, number, number][] = [
  [0, "F32", 1, 4],
  [1, "F16", 1, 2],
  [2, "Q4_0", 32, 2 + 16],
  [3, "Q4_1", 32, 2 + 2 + 16],
  [6, "Q5_0", 32, 2 + 4 + 16],
  [7, "Q5_1", 32, 2 + 2 + 4 + 16],
  [8, "Q8_0", 32, 2 + 32],
  [9, "Q8_1", 32, 2 + 2 + 32],
  [10, "Q2_K", 256, 2 + 2 + QK_K / 16 + QK_K / 4],
  [11, "Q3_K", 256, 2 + QK_K / 4 + QK_K / 8 + 12],
  [12, "Q4_K", 256, 2 + 2 + QK_K / 2 + 12],
  [13, "Q5_K", 256, 2 + 2 + QK_K / 2 + QK_K / 8 + 12],
  [14, "Q6_K", 256, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16],
  [15, "Q8_K", 256, 4 + QK_K + QK_K / 8],
  [16, "IQ2_XXS", 256, 2 + QK_K / 4],
  [17, "IQ2_XS", 256, 2 + QK_K / 4 + QK_K / 32],
  [18, "IQ3_XXS", 256, 2 + QK_K / 4 + QK_K / 8],
  [19, "IQ1_S", 256, 2 + QK_K / 8 + QK_K / 16],
  [20, "IQ4_NL", 32, 2 + 16],
  [21, "IQ3_S", 256, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4],
  [22, "IQ2_S", 256, 2 + QK_K / 4 + QK_K / 16],
  [23, "IQ4_XS", 256, 2 + 2 + QK_K / 2 + QK_K / 64],
  [24, "I8", 1, 1],
  [25, "I16", 1, 2],
  [26, "I32", 1, 4],
  [27, "I64", 1, 8],
  [28, "F64", 1, 8],
  [29, "IQ1_M", 256, QK_K / 8 + QK_K / 16 + QK_K / 32],
  [30, "BF16", 1, 2],
  [34, "TQ1_0", 256, 2 + 4 * 13],
  [35, "TQ2_0", 256, 2 + 64],
  [39, "MXFP4", 32, 1 + 16],
  [40, "NVFP4", 64, 4 + 32],
  [41, "Q1_0", 128, 2 + 16],
  [42, "Q2_0", 64, 2 + 16],
];

const BY_ID: Map<number, GgmlType> = new Map(
  TABLE.map(([id, name, blockSize, typeSize]) => [id, { id, name, blockSize, typeSize }]),
);
const BY_NAME: Map<string, GgmlType> = new Map([...BY_ID.values()].map((t) => [t.name, t]));

/** The type with this `enum ggml_type` id, or undefined for ids removed from ggml or unknown. */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return BY_ID.get(id);
}

/** The type with this name (case-insensitive), or undefined. */
export function ggmlTypeByName(name: string): GgmlType | undefined {
  return BY_NAME.get(name.toUpperCase());
}

/** All known GGML types, in id order. */
export function ggmlTypes(): GgmlType[] {
  return [...BY_ID.values()];
}

/**
 * Bytes of a tensor of `type` with dimensions `shape` (ne[0] first). Throws a RangeError when
 * ne[0] is not a multiple of the block size (ggml requires whole blocks per row).
 */
export function ggmlTensorBytes(type: GgmlType, shape: readonly number[]): number {
  const ne0 = shape.length > 0 ? shape[0] : 1;
  if (ne0 % type.blockSize !== 0) {
    throw new RangeError(`row of ${ne0} elements is not a multiple of the ${type.name} block size ${type.blockSize}`);
  }
  let elements = 1;
  for (const d of shape) elements *= d;
  return (elements / type.blockSize) * type.typeSize;
}
