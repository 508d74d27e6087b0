/**
 * A decoder for the one kind of JPEG that CIFAR image folders hold: 32×32, baseline, three
 * YCbCr components, 4:2:0 or 4:4:4, nothing else in the file but JFIF, tables and comments.
 * It reproduces libjpeg-turbo's default decode as sharp runs it (accurate integer IDCT, "fancy"
 * triangle upsampling, the YCbCr→RGB tables) step by step in integers, so its pixels are
 * byte-identical to prepareImage's sharp path (tested against sharp, and on all 60,000 images of the real
 * archive). It exists for speed: about 40 µs of CPU an image instead of sharp's 300, most of
 * which is libvips building and locking GObjects for every call (g_mutex_lock, malloc, futex
 * waits under perf), work that contends across threads instead of spreading over cores.
 * Anything else (progressive, restart markers, EXIF, ICC profiles, other sizes or samplings,
 * damaged data) gives null, and the caller lets sharp decode it or explain what is wrong.
 */

import { idctIslow, upsampleH2V2 } from './jpeg-idct.js';

const SIZE = 32;

// Zig-zag position → natural (row-major) position of a coefficient in its 8×8 block.
const NATURAL = Uint8Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50,
  43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

// YCbCr→RGB tables of jdcolor.c (16 fractional bits).
const fix = (x: number) => Math.round(x * 65536) | 0;
const HALF = 1 << 15;
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (fix(1.402) * x + HALF) >> 16;
  CB_B[i] = (fix(1.772) * x + HALF) >> 16;
  CR_G[i] = -fix(0.71414) * x;
  CB_G[i] = -fix(0.34414) * x + HALF;
}
const clamp255 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

interface Huffman {
  /** Codes of up to 9 bits: (length << 8) | value, or 0 when the code is longer. */
  fast: Int32Array;
  maxcode: Int32Array;
  valptr: Int32Array;
  mincode: Int32Array;
  values: Uint8Array;
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  dc?: Huffman;
  ac?: Huffman;
}

class Corrupt extends Error {}

// Scratch space: decoding is synchronous, so one set serves every call and spares the garbage
// collector 60,000 sets per import.
const PLANES = [new Uint8Array(SIZE * SIZE), new Uint8Array(SIZE * SIZE), new Uint8Array(SIZE * SIZE)] as const;
const UPSAMPLED = [new Uint8Array(SIZE * SIZE), new Uint8Array(SIZE * SIZE)] as const;
const BLOCK = new Int16Array(64);
const WORKSPACE = new Float64Array(64);
/** Huffman tables by their DHT bytes: an encoder writes the same few tables into every file. */
const huffmanCache = new Map<string, Huffman>();

/**
 * The 32×32×3 RGB pixels (HWC) of a plain CIFAR JPEG, byte-identical to sharp's decode, or null
 * when the file is anything else and needs sharp.
 *
 * @example
 *   const pixels = decodePlainJpeg32(bytes) ?? (await prepareImage(bytes, name)).pixels;
 */
export function decodePlainJpeg32(data: Uint8Array): Uint8Array | null {
  try {
    return decode(data);
  } catch (err) {
    if (err instanceof Corrupt || err instanceof RangeError) return null;
    throw err;
  }
}

function decode(d: Uint8Array): Uint8Array | null {
  if (d.length < 4 || d[0] !== 0xff || d[1] !== 0xd8) return null;
  const quant: (Int32Array | undefined)[] = [];
  const dcTables: (Huffman | undefined)[] = [];
  const acTables: (Huffman | undefined)[] = [];
  let components: Component[] | null = null;
  let jfif = false;
  let pos = 2;
  for (;;) {
    if (pos + 4 > d.length || d[pos] !== 0xff) return null;
    const marker = d[pos + 1]!;
    const length = (d[pos + 2]! << 8) | d[pos + 3]!;
    const start = pos + 4;
    const end = pos + 2 + length;
    if (length < 2 || end > d.length) return null;
    if (marker === 0xe0) {
      // APP0: JFIF tells libjpeg the file is YCbCr.
      if (length >= 7 && d[start] === 0x4a && d[start + 1] === 0x46 && d[start + 2] === 0x49 && d[start + 3] === 0x46 && d[start + 4] === 0) jfif = true;
    } else if (marker === 0xfe) {
      // COM: ignored by every decoder.
    } else if (marker === 0xdb) {
      for (let p = start; p < end; ) {
        const precision = d[p]! >> 4;
        const id = d[p]! & 15;
        if (id > 3 || precision > 1) return null;
        const table = new Int32Array(64);
        p++;
        for (let k = 0; k < 64; k++) {
          table[NATURAL[k]!] = precision ? (d[p]! << 8) | d[p + 1]! : d[p]!;
          p += precision + 1;
        }
        if (p > end) return null;
        quant[id] = table;
      }
    } else if (marker === 0xc4) {
      for (let p = start; p < end; ) {
        const cls = d[p]! >> 4;
        const id = d[p]! & 15;
        if (cls > 1 || id > 3 || p + 17 > end) return null;
        const counts = d.subarray(p + 1, p + 17);
        const total = counts.reduce((a, b) => a + b, 0);
        if (p + 17 + total > end || total > 256) return null;
        // libjpeg refuses DC tables with symbols above 15, used or not.
        if (cls === 0 && d.subarray(p + 17, p + 17 + total).some((v) => v > 15)) return null;
        const key = Buffer.from(d.buffer, d.byteOffset + p + 1, 16 + total).toString('latin1');
        let table = huffmanCache.get(key) ?? null;
        if (table === null) {
          table = buildHuffman(counts, d.slice(p + 17, p + 17 + total));
          if (table === null) return null;
          if (huffmanCache.size >= 64) huffmanCache.clear();
          huffmanCache.set(key, table);
        }
        (cls === 0 ? dcTables : acTables)[id] = table;
        p += 17 + total;
      }
    } else if (marker === 0xc0 || marker === 0xc1) {
      if (components !== null || length !== 17 || d[start] !== 8) return null;
      const height = (d[start + 1]! << 8) | d[start + 2]!;
      const width = (d[start + 3]! << 8) | d[start + 4]!;
      if (width !== SIZE || height !== SIZE || d[start + 5] !== 3) return null;
      components = [0, 1, 2].map((i) => {
        const p = start + 6 + 3 * i;
        return { id: d[p]!, h: d[p + 1]! >> 4, v: d[p + 1]! & 15, tq: d[p + 2]! };
      });
    } else if (marker === 0xda) {
      if (components === null) return null;
      if (!jfif && !(components[0]!.id === 1 && components[1]!.id === 2 && components[2]!.id === 3)) return null;
      if (length !== 12 || d[start] !== 3 || d[start + 7] !== 0 || d[start + 8] !== 63 || d[start + 9] !== 0) return null;
      for (let i = 0; i < 3; i++) {
        const c = components[i]!;
        if (d[start + 1 + 2 * i] !== c.id) return null;
        const tables = d[start + 2 + 2 * i]!;
        c.dc = dcTables[tables >> 4];
        c.ac = acTables[tables & 15];
      }
      return decodeScan(d, end, components, quant);
    } else {
      // Progressive or lossless frames, restart intervals, EXIF/ICC/Adobe segments, anything
      // else: leave it to libjpeg.
      return null;
    }
    pos = end;
  }
}

/** The canonical codes of a DHT table (JPEG spec, annex C), or null where libjpeg calls the table bogus. */
function buildHuffman(counts: Uint8Array, values: Uint8Array): Huffman | null {
  const fast = new Int32Array(512);
  const maxcode = new Int32Array(18).fill(-1);
  const valptr = new Int32Array(17);
  const mincode = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1]!;
    valptr[len] = k;
    mincode[len] = code;
    for (let i = 0; i < n; i++, k++, code++) {
      if (len <= 9) {
        const shift = 9 - len;
        for (let f = code << shift, last = (code + 1) << shift; f < last; f++) fast[f] = (len << 8) | values[k]!;
      }
    }
    if (n > 0) maxcode[len] = code - 1;
    if (code >= 1 << len) return null;
    code <<= 1;
  }
  maxcode[17] = 0x7fffffff;
  return { fast, maxcode, valptr, mincode, values };
}

/** Huffman-decode the one interleaved scan, then IDCT, upsample and convert to RGB. */
function decodeScan(d: Uint8Array, start: number, components: Component[], quant: (Int32Array | undefined)[]): Uint8Array | null {
  const [y, cb, cr] = components as [Component, Component, Component];
  const subsampled = y.h === 2 && y.v === 2;
  if (!subsampled && !(y.h === 1 && y.v === 1)) return null;
  for (const c of [cb, cr]) if (c.h !== 1 || c.v !== 1) return null;
  const tables = components.map((c) => quant[c.tq]);
  if (components.some((c) => !c.dc || !c.ac) || tables.some((t) => !t)) return null;

  // Sample planes: Y at full size, chroma at 16×16 (4:2:0) or 32×32 (4:4:4).
  const chromaSize = subsampled ? 16 : 32;
  const planes = PLANES;
  const widths = [SIZE, chromaSize, chromaSize];
  const mcuSide = subsampled ? 16 : 8;
  const mcus = SIZE / mcuSide;
  const block = BLOCK;
  const workspace = WORKSPACE;
  const pred = [0, 0, 0];
  const bits = new BitReader(d, start);

  for (let my = 0; my < mcus; my++) {
    for (let mx = 0; mx < mcus; mx++) {
      for (let ci = 0; ci < 3; ci++) {
        const c = components[ci]!;
        for (let by = 0; by < c.v; by++) {
          for (let bx = 0; bx < c.h; bx++) {
            block.fill(0);
            const t = bits.huffman(c.dc!);
            if (t > 11) throw new Corrupt();
            pred[ci] = (pred[ci]! + (t === 0 ? 0 : bits.receiveExtend(t))) | 0;
            block[0] = pred[ci]!;
            for (let k = 1; k < 64; ) {
              const rs = bits.huffman(c.ac!);
              const s = rs & 15;
              const r = rs >> 4;
              if (s === 0) {
                if (r !== 15) break;
                k += 16;
                continue;
              }
              k += r;
              if (k > 63) throw new Corrupt();
              block[NATURAL[k]!] = bits.receiveExtend(s);
              k++;
            }
            const width = widths[ci]!;
            const offset = (my * c.v + by) * 8 * width + (mx * c.h + bx) * 8;
            if (!idctIslow(block, tables[ci]!, workspace, planes[ci]!, offset, width)) return null;
          }
        }
      }
    }
  }
  if (!bits.endsCleanly()) return null;

  const [cbFull, crFull] = subsampled ? [upsampleH2V2(planes[1], UPSAMPLED[0]), upsampleH2V2(planes[2], UPSAMPLED[1])] : [planes[1]!, planes[2]!];
  const yPlane = planes[0]!;
  const out = new Uint8Array(SIZE * SIZE * 3);
  for (let i = 0, o = 0; i < SIZE * SIZE; i++, o += 3) {
    const luma = yPlane[i]!;
    const b = cbFull[i]!;
    const r = crFull[i]!;
    out[o] = clamp255(luma + CR_R[r]!);
    out[o + 1] = clamp255(luma + ((CB_G[b]! + CR_G[r]!) >> 16));
    out[o + 2] = clamp255(luma + CB_B[b]!);
  }
  return out;
}

/** Entropy-coded bits, with 0xFF00 unstuffed; past the end marker it reads zeros and counts them. */
class BitReader {
  private buffer = 0;
  private count = 0;
  /** Zero bits invented past the end of the data; reading any of them means the file is truncated. */
  private padding = 0;
  constructor(
    private readonly d: Uint8Array,
    private pos: number,
  ) {}

  private fill(): void {
    while (this.count <= 24) {
      let byte = 0;
      if (this.pos < this.d.length && this.d[this.pos] !== 0xff) {
        byte = this.d[this.pos++]!;
      } else if (this.pos + 1 < this.d.length && this.d[this.pos] === 0xff && this.d[this.pos + 1] === 0) {
        byte = 0xff;
        this.pos += 2;
      } else {
        this.padding += 8;
      }
      this.buffer = ((this.buffer << 8) | byte) >>> 0;
      this.count += 8;
    }
  }

  private take(n: number): number {
    if (this.count < n) this.fill();
    this.count -= n;
    if (this.count < this.padding) throw new Corrupt();
    return (this.buffer >>> this.count) & ((1 << n) - 1);
  }

  huffman(table: Huffman): number {
    if (this.count < 16) this.fill();
    const peek = (this.buffer >>> (this.count - 9)) & 511;
    const fast = table.fast[peek]!;
    if (fast !== 0) {
      this.take(fast >> 8);
      return fast & 255;
    }
    let code = this.take(9);
    let len = 9;
    while (code > table.maxcode[len]!) {
      if (++len > 16) throw new Corrupt();
      code = (code << 1) | this.take(1);
    }
    return table.values[table.valptr[len]! + code - table.mincode[len]!]!;
  }

  /** A coefficient of `s` bits, sign-extended as in the spec's EXTEND procedure. */
  receiveExtend(s: number): number {
    const v = this.take(s);
    return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
  }

  /** After the last block: only padding bits (ones) left in this byte, then the EOI marker. */
  endsCleanly(): boolean {
    const real = this.count - this.padding;
    if (real >= 8) return false;
    if (real > 0 && ((this.buffer >>> this.padding) & ((1 << real) - 1)) !== (1 << real) - 1) return false;
    return this.d[this.pos] === 0xff && this.d[this.pos + 1] === 0xd9;
  }
}
