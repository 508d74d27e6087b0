/**
 * Shape and tiling decisions for the WebGPU convolution-gradient kernels, as pure functions so
 * that they can be tested without a GPU.
 *
 * Both gradients are implicit GEMMs: nothing is materialised, each workgroup gathers the tiles
 * of the virtual im2col matrix it needs into workgroup memory.
 * - Filter gradient: dW[M = fh*fw*ci, N = co] = X_col^T[M, K] * dY[K, N] with K = n*oh*ow.
 * - Input gradient: dX[M = n*h*w, N = ci] = dY_col[M, K] * W^T[K, N] with K = taps*co, split by
 *   output phase (ih mod stride, iw mod stride) so that a strided convolution only visits the
 *   taps that reach each pixel (1 of 9 to 4 of 9 for a 3x3 stride 2, not all 9 with zeros).
 */
import { webGpuKernelSettings } from './settings.js';

/** The subset of tfjs' Conv2DInfo that the kernels read. */
export interface ConvGeometry {
  batchSize: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padInfo: { top: number; left: number };
  dataFormat: 'channelsLast' | 'channelsFirst';
}

/** A workgroup tile: TM x TN outputs computed by 16 x 16 threads, TK deep per step. */
export interface Tile {
  tm: TileSide;
  tn: TileSide;
  tk: 8 | 16 | 32;
}
export type TileSide = 16 | 32 | 64 | 128;

/** Threads per workgroup side: 16 x 16 = 256 threads, each computing (tm/16) x (tn/16) outputs. */
export const THREADS_PER_SIDE = 16;
// Enough workgroups to fill a large GPU (an H100 has 132 SMs) a few times over.
const TARGET_WORKGROUPS = 512;
// Below this reduction length per split, the partial sums cost more than they save.
const MIN_K_PER_SPLIT = 256;
const MAX_SPLITS = 64;

/**
 * Whether our kernels handle this convolution: NHWC, 1x1 or 3x3 filters, stride 1 or 2 on each
 * axis, no dilation. Anything else goes to the stock tfjs kernel.
 */
export function isSupported(c: ConvGeometry): boolean {
  return (
    c.dataFormat === 'channelsLast' &&
    c.dilationHeight === 1 && c.dilationWidth === 1 &&
    [1, 3].includes(c.filterHeight) && [1, 3].includes(c.filterWidth) &&
    [1, 2].includes(c.strideHeight) && [1, 2].includes(c.strideWidth) &&
    c.padInfo.top >= 0 && c.padInfo.left >= 0
  );
}

const side = (n: number): TileSide => (n <= 16 ? 16 : n <= 32 ? 32 : n <= 64 || webGpuKernelSettings().maxTileSide === 64 ? 64 : 128);

/** WebGPU's default `maxComputeWorkgroupStorageSize`, which every device offers. */
export const DEFAULT_WORKGROUP_STORAGE = 16384;

/** The most workgroup memory a tile's program stages: A and B, TK deep, rows padded by up to 4 floats. */
export function tileStorageBytes(t: Tile): number {
  return 4 * t.tk * (t.tm + t.tn + 8);
}

/**
 * The smallest of 16, 32, 64 (or 128, see settings.ts) that covers each side, so narrow
 * matrices (the stem's 3 input channels, 27-row dW) waste little. TK is 16, or 8 for a
 * 128 x 128 tile so that both staged tiles fit WebGPU's default 16 KiB of workgroup memory
 * (16 with the `deepK` setting when the device's `storageBytes` hold it: 48 KiB on NVIDIA).
 */
export function pickTile(rows: number, cols: number, storageBytes = DEFAULT_WORKGROUP_STORAGE): Tile {
  const tm = side(rows);
  const tn = side(cols);
  // float16 tiles (matrix.ts) are one or two subgroup matrices' K deep; matrixSupport asks for 32 KiB.
  if (webGpuKernelSettings().matmul !== 'f32') return { tm, tn, tk: webGpuKernelSettings().matrixDepth };
  if (tm !== 128 || tn !== 128) return { tm, tn, tk: 16 };
  const deep: Tile = { tm, tn, tk: 16 };
  return webGpuKernelSettings().deepK && tileStorageBytes(deep) <= storageBytes ? deep : { tm, tn, tk: 8 };
}

/** A GEMM's tile, sizes (C[M, N] = sum over K) and workgroup grid. */
export interface GemmPlan {
  tile: Tile;
  m: number;
  n: number;
  k: number;
  dispatch: [number, number, number];
}

/** A GEMM with its reduction split in slices along the dispatch's z. */
export interface SplitGemmPlan extends GemmPlan {
  /** Workgroups along K; each writes its own partial [M, N], summed by a second pass when > 1. */
  splits: number;
  /** K per split, a multiple of tk. */
  kPerSplit: number;
}

/** GEMM sizes: M = fh*fw*ci, N = co, K = n*oh*ow. */
export type FilterGradPlan = SplitGemmPlan;

/**
 * Tiles the filter gradient and splits its reduction when the output alone gives too few
 * workgroups: early ResNet stages have a small dW (576 x 64) and a huge K (256*32*32).
 * @example // 3x3 conv, 64 -> 64 channels on 256 x 32 x 32: dW is 576 x 64 (9 tiles), K = 262,144
 * planFilterGrad(info) // { splits: 56, kPerSplit: 4688, dispatch: [1, 9, 56], ... }
 */
export function planFilterGrad(c: ConvGeometry, storageBytes = DEFAULT_WORKGROUP_STORAGE): FilterGradPlan {
  const m = c.filterHeight * c.filterWidth * c.inChannels;
  const n = c.outChannels;
  const k = c.batchSize * c.outHeight * c.outWidth;
  return planSplitGemm(m, n, k, pickTile(m, n, storageBytes));
}

/**
 * A GEMM whose reduction is split into enough slices (each a multiple of the tile's depth, none
 * shorter than 256, at most 64) for its tiles to make about 512 workgroups; 1 slice when they
 * already do.
 */
export function planSplitGemm(m: number, n: number, k: number, tile: Tile): SplitGemmPlan {
  const tiles = Math.ceil(m / tile.tm) * Math.ceil(n / tile.tn);
  const wanted = Math.max(1, Math.floor(TARGET_WORKGROUPS / tiles));
  const affordable = Math.max(1, Math.floor(k / MIN_K_PER_SPLIT));
  let splits = Math.min(wanted, affordable, MAX_SPLITS);
  const kPerSplit = Math.ceil(Math.ceil(k / splits) / tile.tk) * tile.tk;
  splits = Math.ceil(k / kPerSplit); // rounding kPerSplit up may leave the last split empty
  return { tile, m, n, k, splits, kPerSplit, dispatch: [Math.ceil(n / tile.tn), Math.ceil(m / tile.tm), splits] };
}

/** The taps of a filter axis that reach input positions of phase `p` (positions ≡ p mod stride). */
export function phaseTaps(p: number, pad: number, stride: number, filter: number): { start: number; count: number } {
  const start = (((p + pad) % stride) + stride) % stride;
  return { start, count: start < filter ? Math.ceil((filter - start) / stride) : 0 };
}

export interface InputGradPlan {
  tile: Tile;
  /** Phases: strideHeight * strideWidth, one dispatch slice (z) each. */
  phases: number;
  /** Rows (pixels) of the largest phase and the N = ci columns. */
  maxRows: number;
  n: number;
  /** Per phase: its rows and its reduction length taps*co (0 when no tap reaches it). */
  perPhase: Array<{ rows: number; k: number }>;
  dispatch: [number, number, number];
}

/**
 * Tiles the input gradient per output phase.
 * @example // 3x3, stride 2, 'same' on 8x8 (pads 0 top, 1 bottom): taps per phase
 * planInputGrad(info).perPhase.map((p) => p.k / info.outChannels) // [4, 2, 2, 1]
 */
export function planInputGrad(c: ConvGeometry, storageBytes = DEFAULT_WORKGROUP_STORAGE): InputGradPlan {
  const { strideHeight: sh, strideWidth: sw } = c;
  const perPhase: Array<{ rows: number; k: number }> = [];
  for (let ph = 0; ph < sh; ph++) {
    for (let pw = 0; pw < sw; pw++) {
      const rowsH = Math.max(0, Math.ceil((c.inHeight - ph) / sh));
      const rowsW = Math.max(0, Math.ceil((c.inWidth - pw) / sw));
      const th = phaseTaps(ph, c.padInfo.top, sh, c.filterHeight).count;
      const tw = phaseTaps(pw, c.padInfo.left, sw, c.filterWidth).count;
      perPhase.push({ rows: c.batchSize * rowsH * rowsW, k: th * tw * c.outChannels });
    }
  }
  const maxRows = Math.max(...perPhase.map((p) => p.rows));
  const tile = pickTile(maxRows, c.inChannels, storageBytes);
  return {
    tile,
    phases: sh * sw,
    maxRows,
    n: c.inChannels,
    perPhase,
    dispatch: [Math.ceil(c.inChannels / tile.tn), Math.ceil(maxRows / tile.tm), sh * sw],
  };
}
