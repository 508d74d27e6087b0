import type { IncomingMessage } from 'node:http';
import { Hono, type Context } from 'hono';
import { CifarError } from '../../errors.js';
import type { Classification, Classify } from '../classifier.js';
import { nodeStream, readMultipart, readRaw, type BodyLimits, type BodySource, type Upload } from '../multipart.js';
import '../types.js';

export interface PredictRoutesOptions {
  classify: Classify;
  limits: BodyLimits;
  requestTimeoutMs: number;
}

// Seven significant digits is all a float32 holds; more only bloats the JSON.
const round = (x: number) => Number(x.toPrecision(7));

/**
 * The body as a Node stream: the socket itself under @hono/node-server (no web-stream copy on
 * the hot path), or the web stream of an in-process `app.request()`.
 */
function bodySource(c: Context): BodySource {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const length = c.req.header('content-length');
  return {
    contentType: c.req.header('content-type') ?? '',
    contentLength: length === undefined ? undefined : Number(length),
    stream: incoming && typeof incoming.pipe === 'function' ? incoming : nodeStream(c.req.raw.body),
  };
}

/** The uploaded files of `field`: multipart, or a raw `image/*` body as a single file. */
async function uploads(c: Context, field: string, limits: BodyLimits, allowRaw: boolean): Promise<Upload[]> {
  const source = bodySource(c);
  const type = source.contentType.toLowerCase();
  let files: Upload[];
  if (type.startsWith('multipart/form-data')) {
    files = (await readMultipart(source, [field], limits)).filter((f) => f.field === field);
  } else if (allowRaw && type.startsWith('image/')) {
    files = [{ field, filename: 'upload', mimeType: type, data: await readRaw(source, limits) }];
  } else {
    throw new CifarError('UNSUPPORTED_MEDIA_TYPE', `content type ${type || '(none)'} is not accepted`, {
      hint: allowRaw ? `send multipart/form-data with a \`${field}\` field, or an image/* body` : `send multipart/form-data with \`${field}\` fields`,
    });
  }
  if (files.length === 0) throw new CifarError('MISSING_FIELD', `the multipart field \`${field}\` is missing`, { hint: `attach the image as \`${field}\`` });
  return files;
}

/**
 * The JSON of one answer. Everything but `cached` follows from the probabilities, and a cache
 * hit hands back the very Float32Array it stored, so that part is serialised once per entry.
 */
function singleJson(memo: WeakMap<Float32Array, string>): (r: Classification) => string {
  return (r) => {
    let head = memo.get(r.probabilities);
    if (head === undefined) {
      const json = JSON.stringify({
        prediction: r.label,
        class_name: r.className,
        confidence: round(r.confidence),
        probabilities: Array.from(r.probabilities, round),
        model_version: r.modelVersion,
      });
      head = json.slice(0, -1);
      memo.set(r.probabilities, head);
    }
    return `${head},"cached":${r.cached}}`;
  };
}

const JSON_TYPE = { 'Content-Type': 'application/json' };

/** POST /predict and POST /predict/batch, with the field names of the Python service. */
export function predictRoutes(options: PredictRoutesOptions): Hono {
  const { classify, limits } = options;
  const app = new Hono();
  const single = singleJson(new WeakMap());

  app.post('/predict', async (c) => {
    const [file] = await uploads(c, 'file', limits, true);
    const result = await classify(file!.data, file!.filename || 'file', Date.now() + options.requestTimeoutMs);
    c.set('cached', result.cached);
    return c.body(single(result), 200, JSON_TYPE);
  });

  app.post('/predict/batch', async (c) => {
    const files = await uploads(c, 'files', limits, false);
    const deadline = Date.now() + options.requestTimeoutMs;
    const results = await Promise.all(files.map((f, i) => classify(f.data, f.filename || `files[${i}]`, deadline)));
    c.set('cached', results.every((r) => r.cached));
    return c.json({
      predictions: results.map((r) => r.label),
      class_names: results.map((r) => r.className),
      confidences: results.map((r) => round(r.confidence)),
      probabilities: results.map((r) => Array.from(r.probabilities, round)),
      cached: results.map((r) => r.cached),
      batch_size: results.length,
      model_version: results[0]!.modelVersion,
    });
  });

  return app;
}
