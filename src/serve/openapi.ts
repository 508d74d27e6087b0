import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const errorRef = { $ref: '#/components/schemas/Error' };
const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [String(c), { description: 'error', content: { 'application/json': { schema: errorRef } } }]));
const probs = { type: 'array', items: { type: 'number' }, minItems: 10, maxItems: 10 };
const json = (schema: object) => ({ 'application/json': { schema } });

/** The OpenAPI 3.1 description of the API served by `cifar serve`. */
export function openApiDocument(version: string): object {
  return {
    openapi: '3.1.0',
    info: { title: 'cifar serve', version, description: 'CIFAR-10 image classification. Errors are `{"error":{"code","message"}}`.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' } },
      schemas: {
        Error: {
          type: 'object',
          properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, hint: { type: 'string' } }, required: ['code', 'message'] } },
        },
        Prediction: {
          type: 'object',
          properties: {
            prediction: { type: 'integer' },
            class_name: { type: 'string' },
            confidence: { type: 'number' },
            probabilities: probs,
            model_version: { type: 'string' },
            cached: { type: 'boolean' },
          },
        },
        BatchPrediction: {
          type: 'object',
          properties: {
            predictions: { type: 'array', items: { type: 'integer' } },
            class_names: { type: 'array', items: { type: 'string' } },
            confidences: { type: 'array', items: { type: 'number' } },
            probabilities: { type: 'array', items: probs },
            cached: { type: 'array', items: { type: 'boolean' } },
            batch_size: { type: 'integer' },
            model_version: { type: 'string' },
          },
        },
      },
    },
    security: [{ bearer: [] }, { apiKey: [] }],
    paths: {
      '/predict': {
        post: {
          summary: 'Classify one image',
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', format: 'binary' } }, required: ['file'] } },
              'image/*': { schema: { type: 'string', format: 'binary' } },
            },
          },
          responses: { '200': { description: 'the prediction', content: json({ $ref: '#/components/schemas/Prediction' }) }, ...errors(400, 401, 413, 415, 422, 503) },
        },
      },
      '/predict/batch': {
        post: {
          summary: 'Classify several images in one request',
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': {
                schema: { type: 'object', properties: { files: { type: 'array', items: { type: 'string', format: 'binary' } } }, required: ['files'] },
              },
            },
          },
          responses: { '200': { description: 'one entry per file, in order', content: json({ $ref: '#/components/schemas/BatchPrediction' }) }, ...errors(400, 401, 413, 415, 422, 503) },
        },
      },
      '/health': { get: { summary: 'Liveness and dependencies', security: [], responses: { '200': { description: 'healthy or degraded' } } } },
      '/ready': { get: { summary: 'Ready once the model is loaded and warm', security: [], responses: { '200': { description: 'ready' }, ...errors(503) } } },
      '/classes': { get: { summary: 'The class names, in label order', responses: { '200': { description: 'classes' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'text exposition format' } } } },
      '/admin/reload': { post: { summary: 'Reload the model folder', responses: { '200': { description: 'the new model' }, ...errors(401, 503) } } },
    },
  };
}

/** The /docs page: Swagger UI loaded from our own /docs/assets, so it works offline. */
export const DOCS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cifar serve API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });</script>
</body></html>`;

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
};
const loaded = new Map<string, Promise<Buffer>>();

/** One of the few Swagger UI files /docs needs, or undefined for any other name. */
export function docsAsset(name: string): { type: string; body: Promise<Buffer> } | undefined {
  const type = ASSETS[name];
  if (!type) return undefined;
  let body = loaded.get(name);
  if (!body) {
    const dir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
    body = readFile(join(dir, name));
    loaded.set(name, body);
  }
  return { type, body };
}
