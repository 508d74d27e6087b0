import { deflateRawSync } from 'node:zlib';
import { crc32, pngChunk, PNG_SIGNATURE } from '../image/png.js';

// A minimal PNG writer (8-bit RGB, no filtering) for the benchmark, which makes a new image for
// every request by default, on the same CPU as the server it measures: encoding synchronously in
// microseconds keeps sharp's thread-pool round trip off the request path, and the part the
// variants share is compressed only once.

const SIGNATURE = Buffer.from(PNG_SIGNATURE);
const IEND = pngChunk('IEND', new Uint8Array(0));

function ihdr(width: number, height: number): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data[8] = 8; // bit depth
  data[9] = 2; // colour type: RGB
  return pngChunk('IHDR', data);
}

/** The rows with their filter byte (0: none) in front, as PNG compresses them. */
function filteredRows(rgb: Uint8Array, stride: number, rows: number): Buffer {
  const out = Buffer.alloc((stride + 1) * rows);
  for (let y = 0; y < rows; y++) out.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return out;
}

/** Many PNGs of one picture that differ only in its first `headBytes` bytes. */
export interface PngVariants {
  /** Bytes at the start of the pixels that a variant may change (whole rows, at least the asked number or the whole image). */
  readonly headBytes: number;
  /** The PNG of the picture with its first `headBytes` bytes replaced by `head`. */
  encode(head: Uint8Array): Buffer;
}

/**
 * An encoder for variants of one picture that differ in their first rows: the rest is compressed
 * once, and each variant's first rows go in front of it as an uncompressed deflate block. A
 * variant then costs two checksums instead of a compression (about 10 µs instead of 60 for a
 * 32×32 image), and is a valid PNG of the changed pixels, about 100 bytes larger.
 *
 * @example
 *   const variants = pngVariants(rgb, 32, 32, 64);
 *   const head = rgb.slice(0, variants.headBytes);
 *   head[0] ^= 1;
 *   const png = variants.encode(head); // rgb with its first byte changed
 */
export function pngVariants(rgb: Uint8Array, width: number, height: number, headBytes: number): PngVariants {
  const stride = width * 3;
  if (rgb.length !== stride * height) throw new RangeError(`pngVariants: ${rgb.length} bytes is not ${width}×${height}×3`);
  const headRows = Math.min(height, Math.max(1, Math.ceil(headBytes / stride)));
  const storedLength = headRows * (stride + 1);
  if (storedLength > 0xffff) throw new RangeError(`pngVariants: ${headRows} rows of ${width} pixels do not fit one stored deflate block`);
  const restRaw = filteredRows(rgb.subarray(headRows * stride), stride, height - headRows);
  const restDeflated = deflateRawSync(restRaw, { level: 1 });
  const restAdler = adler32(restRaw);
  const before = Buffer.concat([SIGNATURE, ihdr(width, height)]);
  return {
    headBytes: headRows * stride,
    encode(head) {
      if (head.length !== headRows * stride) throw new RangeError(`pngVariants: the head is ${headRows * stride} bytes, not ${head.length}`);
      const idatLength = 2 + 5 + storedLength + restDeflated.length + 4;
      const png = Buffer.alloc(before.length + 8 + idatLength + 4 + IEND.length);
      before.copy(png, 0);
      let at = before.length;
      png.writeUInt32BE(idatLength, at);
      png.write('IDAT', at + 4, 'latin1');
      const idat = at + 8;
      at = idat;
      png[at++] = 0x78; // zlib header: deflate, 32 KB window
      png[at++] = 0x01; // no preset dictionary, fastest
      png[at++] = 0x00; // a stored block, not the last one
      png.writeUInt16LE(storedLength, at);
      png.writeUInt16LE(~storedLength & 0xffff, at + 2);
      at += 4;
      const stored = png.subarray(at, at + storedLength);
      for (let y = 0; y < headRows; y++) stored.set(head.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
      at += storedLength;
      restDeflated.copy(png, at);
      at += restDeflated.length;
      png.writeUInt32BE(adler32Combine(adler32(stored), restAdler, restRaw.length), at);
      at += 4;
      png.writeUInt32BE(crc32(png.subarray(idat - 4, at)), at);
      IEND.copy(png, at + 4);
      return png;
    },
  };
}

const ADLER_BASE = 65521;

function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  // Reduce every 5552 bytes, as zlib does (its NMAX), so the sums stay small integers.
  for (let i = 0; i < data.length; ) {
    const end = Math.min(data.length, i + 5552);
    for (; i < end; i++) {
      a += data[i]!;
      b += a;
    }
    a %= ADLER_BASE;
    b %= ADLER_BASE;
  }
  return (b * 65536 + a) >>> 0;
}

/** The Adler-32 of A followed by B, from the two checksums and B's length (zlib's adler32_combine). */
function adler32Combine(adlerA: number, adlerB: number, lengthB: number): number {
  const rem = lengthB % ADLER_BASE;
  const a1 = adlerA & 0xffff;
  let sum1 = a1 + (adlerB & 0xffff) + ADLER_BASE - 1;
  let sum2 = ((rem * a1) % ADLER_BASE) + (adlerA >>> 16) + (adlerB >>> 16) + ADLER_BASE - rem;
  sum1 %= ADLER_BASE;
  sum2 %= ADLER_BASE;
  return (sum2 * 65536 + sum1) >>> 0;
}
