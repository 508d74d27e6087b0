import { CifarError } from '../errors.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { RECORD_BYTES } from './cifar-binary.js';
import { unpickle, type NdArray, type PyValue } from './pickle.js';

/**
 * One batch of CIFAR-10's "python version" (`cifar-10-batches-py/data_batch_1` …, what torchvision
 * downloads) as records of the binary release: a label byte, then the image's 3,072 bytes. The
 * pickle's `data` rows hold the same bytes in the same order (1,024 red, then green, then blue),
 * so a record is the label followed by its row.
 */
export function pythonBatchToRecords(bytes: Uint8Array, source: string): Uint8Array {
  const bad = (why: string): never => {
    throw new CifarError('ARCHIVE_INVALID', `${source}: not a CIFAR-10 python batch (${why})`);
  };
  const batch = unpickle(bytes, source);
  if (!(batch instanceof Map)) return bad('the pickle holds no dict');
  const data = batch.get('data');
  const labels = batch.get('labels');
  if (!isArray(data)) return bad('no "data" array');
  if (!/^[|<>=]?u1$|^B$/.test(data.dtype)) bad(`"data" holds ${data.dtype}, not uint8`);
  const [rows, columns] = data.shape;
  if (data.shape.length !== 2 || columns !== IMAGE_BYTES) bad(`"data" has shape (${data.shape.join(', ')}), not (N, ${IMAGE_BYTES})`);
  if (data.fortran && rows! > 1) bad('"data" is in Fortran order');
  if (data.data.length !== rows! * IMAGE_BYTES) bad(`"data" holds ${data.data.length} bytes for ${rows} images`);
  const labelList = labelValues(labels, bad);
  if (labelList.length !== rows) bad(`${labelList.length} labels for ${rows} images`);
  const out = new Uint8Array(rows! * RECORD_BYTES);
  for (let r = 0; r < rows!; r++) {
    const label = labelList[r]!;
    if (!Number.isInteger(label) || label < 0 || label > 9) bad(`label ${String(label)} of image ${r} is not 0–9`);
    out[r * RECORD_BYTES] = label;
    out.set(data.data.subarray(r * IMAGE_BYTES, (r + 1) * IMAGE_BYTES), r * RECORD_BYTES + 1);
  }
  return out;
}

function isArray(v: PyValue | undefined): v is NdArray {
  return typeof v === 'object' && v !== null && 'shape' in v && 'data' in v;
}

/** The labels: a list of ints (as the release has them), or an integer numpy array. */
function labelValues(labels: PyValue | undefined, bad: (why: string) => never): number[] {
  if (Array.isArray(labels)) return labels.map((l) => (typeof l === 'number' ? l : NaN));
  const m = isArray(labels) && labels.shape.length === 1 ? /^([|<>=]?)([iu])([1248])$/.exec(labels.dtype) : null;
  if (!m) return bad('no "labels" list');
  const { data, shape } = labels as NdArray;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const [width, little, signed] = [Number(m[3]), m[1] !== '>', m[2] === 'i'];
  if (data.byteLength !== shape[0]! * width) bad(`"labels" holds ${data.byteLength} bytes for ${shape[0]} labels`);
  const read = (i: number): number => {
    const at = i * width;
    if (width === 1) return signed ? view.getInt8(at) : view.getUint8(at);
    if (width === 2) return signed ? view.getInt16(at, little) : view.getUint16(at, little);
    if (width === 4) return signed ? view.getInt32(at, little) : view.getUint32(at, little);
    return Number(signed ? view.getBigInt64(at, little) : view.getBigUint64(at, little));
  };
  return Array.from({ length: shape[0]! }, (_, i) => read(i));
}
