import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { crc32, decodePlainPng } from '../../src/image/png.js';

const noise = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 24));
const rgbPng = (side: number) => sharp(noise(side * side * 3), { raw: { width: side, height: side, channels: 3 } }).png().toBuffer();

describe('decodePlainPng', () => {
  it('decodes a plain RGB PNG to the pixels it was made from', async () => {
    const png = await rgbPng(32);
    expect(decodePlainPng(png, 1024)).toEqual({ data: new Uint8Array(noise(3072)), width: 32, height: 32, channels: 3 });
  });

  it('declines images over the pixel limit, with a damaged chunk, or with colour management, for the full decoder to handle', async () => {
    const png = await rgbPng(32);
    expect(decodePlainPng(png, 1023)).toBeNull();
    const damaged = Buffer.from(png);
    damaged[png.indexOf('IDAT') + 10]! ^= 1;
    expect(decodePlainPng(damaged, 1024)).toBeNull();
    const gama = Buffer.from([0, 0, 0, 4, 0x67, 0x41, 0x4d, 0x41, 0, 1, 0x86, 0xa0, 0x31, 0xe8, 0x96, 0x5f]);
    expect(decodePlainPng(Buffer.concat([png.subarray(0, 33), gama, png.subarray(33)]), 1024)).toBeNull();
    expect(decodePlainPng(await sharp(noise(3072), { raw: { width: 32, height: 32, channels: 3 } }).png({ palette: true }).toBuffer(), 1024)).toBeNull();
    expect(decodePlainPng(png.subarray(0, png.length - 12), 1024)).toBeNull(); // no IEND
  });
});

describe('crc32', () => {
  it('matches zlib over parts as over their concatenation', () => {
    const data = noise(1000);
    expect(crc32(data.subarray(0, 300), data.subarray(300))).toBe(zlib.crc32(data));
    expect(crc32(Buffer.from('IEND'))).toBe(0xae426082);
  });
});
