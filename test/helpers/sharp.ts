import sharp from 'sharp';

/**
 * An image's pixels as prepareImage's sharp path decodes them (EXIF rotation, alpha flattened
 * onto white, sRGB, no alpha; raw HWC bytes), for checking the decoders that skip sharp.
 */
export function sharpPixels(data: Uint8Array): Promise<Buffer> {
  return sharp(data, { failOn: 'error' }).rotate().flatten({ background: { r: 255, g: 255, b: 255 } }).toColourspace('srgb').removeAlpha().raw().toBuffer();
}
