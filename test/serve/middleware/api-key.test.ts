import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { errorResponse } from '../../../src/serve/http-errors.js';
import { apiKey } from '../../../src/serve/middleware/api-key/index.js';

function app(key: string | undefined) {
  const a = new Hono();
  a.onError((err, c) => {
    const { status, body } = errorResponse(err);
    return c.json(body, status);
  });
  a.use(apiKey({ key, open: ['/health'] }));
  a.get('/secret', (c) => c.text('ok'));
  a.get('/health', (c) => c.text('ok'));
  return a;
}

describe('apiKey middleware', () => {
  it('lets everything through when no key is set', async () => {
    expect((await app(undefined).request('/secret')).status).toBe(200);
  });
  it('accepts the key as a Bearer token or X-API-Key, and refuses others with 401', async () => {
    const a = app('k1');
    expect((await a.request('/secret', { headers: { authorization: 'Bearer k1' } })).status).toBe(200);
    expect((await a.request('/secret', { headers: { 'x-api-key': 'k1' } })).status).toBe(200);
    const missing = await a.request('/secret');
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ error: { code: 'UNAUTHORIZED', message: 'an API key is required' } });
    expect((await a.request('/secret', { headers: { authorization: 'Bearer k2' } })).status).toBe(401);
    expect((await a.request('/secret', { headers: { 'x-api-key': 'k1x' } })).status).toBe(401);
  });
  it('leaves the open paths open', async () => {
    expect((await app('k1').request('/health')).status).toBe(200);
  });
});
