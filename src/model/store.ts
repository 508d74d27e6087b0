import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { CifarError, fromSystemError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import './batchnorm.js'; // registers CifarBatchNorm for deserialisation
import { toFloat16 } from './float16.js';

/** What a saved model says about itself (metadata.json). */
export interface ModelMetadata {
  name: string;
  /** Short sha256 of the weight bytes. */
  version: string;
  architecture: string;
  parameters: number;
  classes: string[];
  normalization: { mean: number[]; std: number[] };
  testAccuracy: number | null;
  perClassAccuracy: Record<string, number> | null;
  epochs: number;
  /**
   * Optimisation steps trained: `epochs` whole epochs' worth, or fewer when a run planned to a
   * time limit ended within its last epoch (absent in models from before it was recorded).
   */
  steps?: number;
  batchSize: number;
  trainingSeconds: number;
  /** The run's wall time (set-up, compilation, test passes, checkpoints included), across resumptions. */
  wallSeconds?: number;
  backend: string;
  /**
   * The backend's start line (its device, and for webgpu the kernels in force, e.g. `float16
   * tensor cores`), so that a model says how it was trained; for a resumed run, its last part's.
   */
  backendDetail?: string;
  datasetChecksum: string | null;
  createdAt: string;
  packageVersion: string;
  config?: Record<string, unknown>;
  /** The version of the saved model the run started from (`config.init`), if it did. */
  initVersion?: string;
}

/** The model bundled with the package, wherever it is installed: what --model defaults to. */
export const BUNDLED_MODEL_DIR = fileURLToPath(new URL('../../models/default', import.meta.url));

const MODEL_JSON = 'model.json';
const METADATA_JSON = 'metadata.json';

/** Short sha256 of the weights: the model's version, which changes whenever a weight does. */
export function modelVersion(weights: Uint8Array): string {
  return createHash('sha256').update(weights).digest('hex').slice(0, 12);
}

/** How saved weights are stored: float32, or float16 (half the size; tfjs reads it back as float32). */
export type WeightsDtype = 'float32' | 'float16';

/**
 * The float32 weights of `specs` in `data` as float16, with each spec marked as quantized the way
 * tfjs' loader expects (`quantization: {dtype: 'float16'}`); other dtypes are copied as they are.
 */
export function quantizeFloat16(data: Uint8Array, specs: tf.io.WeightsManifestEntry[]): { data: Uint8Array<ArrayBuffer>; specs: tf.io.WeightsManifestEntry[] } {
  const parts: Uint8Array[] = [];
  const out: tf.io.WeightsManifestEntry[] = [];
  let offset = 0;
  for (const spec of specs) {
    const count = spec.shape.reduce((n, d) => n * d, 1);
    const bytes = count * 4; // float32 and int32 alike
    const chunk = data.slice(offset, offset + bytes);
    offset += bytes;
    if (spec.dtype === 'float32' && spec.quantization === undefined) {
      parts.push(new Uint8Array(toFloat16(new Float32Array(chunk.buffer, 0, count)).buffer));
      out.push({ ...spec, quantization: { dtype: 'float16' } });
    } else {
      parts.push(chunk);
      out.push(spec);
    }
  }
  if (offset !== data.byteLength) throw new Error(`weight specs cover ${offset} bytes of ${data.byteLength}`);
  return { data: new Uint8Array(tf.io.concatenateArrayBuffers(parts.map((p) => p.buffer as ArrayBuffer))), specs: out };
}

/**
 * Save a model in the tfjs layers format (`model.json` + one weight file) with its metadata.
 * The weight file is named after the version and model.json is renamed into place last, so a
 * reader (a server reloading on SIGHUP) sees either the old model or the new one, never a mix.
 * Other files in the folder (history, checkpoint) are left alone. Returns the version.
 */
export async function saveModel(dir: string, model: tf.LayersModel, metadata: Omit<ModelMetadata, 'version'>, options: { weights?: WeightsDtype } = {}): Promise<ModelMetadata> {
  let saved: ModelMetadata | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      let bytes: Uint8Array<ArrayBuffer> = new Uint8Array(Array.isArray(data) ? tf.io.concatenateArrayBuffers(data) : (data ?? new ArrayBuffer(0)));
      let specs = artifacts.weightSpecs ?? [];
      if (options.weights === 'float16') ({ data: bytes, specs } = quantizeFloat16(bytes, specs));
      const version = modelVersion(bytes);
      const weightsFile = `weights-${version}.bin`;
      const manifest = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [weightsFile], weights: specs }],
      };
      saved = { ...metadata, version };
      try {
        const what = `saving the model in ${dir}`;
        await writeFileAtomic(join(dir, weightsFile), bytes, what);
        await writeFileAtomic(join(dir, METADATA_JSON), JSON.stringify(saved, null, 2) + '\n', what);
        await writeFileAtomic(join(dir, MODEL_JSON), JSON.stringify(manifest), what);
        for (const f of await readdir(dir)) {
          if (/^weights-[0-9a-f]+\.bin$/.test(f) && f !== weightsFile) await rm(join(dir, f), { force: true });
        }
      } catch (err) {
        throw fromSystemError(err, `saving the model in ${dir}`);
      }
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}

/** Load a model folder written by `saveModel`: the tfjs model and its metadata. */
export async function loadModel(dir: string): Promise<{ model: tf.LayersModel; metadata: ModelMetadata }> {
  let manifest: { modelTopology: object; weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[] };
  let metadata: ModelMetadata;
  try {
    manifest = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8'));
    metadata = JSON.parse(await readFile(join(dir, METADATA_JSON), 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CifarError('MODEL_MISSING', code === 'ENOENT' ? `no model at ${dir} (model.json and metadata.json are needed)` : `${dir}: unreadable model files (${(err as Error).message})`, {
      hint: 'train one with `cifar train --out DIR`, or pass --model with a model folder',
    });
  }
  try {
    const groups = manifest.weightsManifest;
    const buffers = await Promise.all(groups.flatMap((g) => g.paths).map((p) => readFile(join(dir, p))));
    const weightData = tf.io.concatenateArrayBuffers(buffers.map((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer));
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({ modelTopology: manifest.modelTopology, weightSpecs: groups.flatMap((g) => g.weights), weightData }),
    );
    return { model, metadata };
  } catch (err) {
    throw new CifarError('MODEL_INVALID', `${dir}: the model files are damaged (${String((err as Error).message).split('\n')[0]})`, { cause: err });
  }
}
