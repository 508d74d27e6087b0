import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { CifarError } from '../errors.js';

export interface ListenOptions {
  port: number;
  host: string;
  /** Longest time a client may take to send one whole request (slow uploads get a 408). */
  requestTimeoutMs: number;
}

export interface RunningServer {
  server: Server;
  /** The bound port (useful with port 0). */
  port: number;
  url: string;
  /** Requests being answered right now. */
  inFlight(): number;
  /**
   * Stop accepting connections, let in-flight requests finish for up to `drainMs`, then cut
   * whatever is left. Resolves once the server is closed.
   */
  close(drainMs: number): Promise<void>;
}

/**
 * Serve a Hono app on @hono/node-server, counting in-flight requests so shutdown can wait for
 * them instead of dropping them.
 *
 * @example
 *   const running = await listen(served.app, { port: 0, host: '127.0.0.1', requestTimeoutMs: 30_000 });
 *   await running.close(10_000);
 */
export function listen(app: Hono, options: ListenOptions): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({
      fetch: app.fetch,
      port: options.port,
      hostname: options.host,
      serverOptions: {
        requestTimeout: options.requestTimeoutMs,
        headersTimeout: Math.min(options.requestTimeoutMs, 60_000),
        // Node checks those timeouts only this often (30 s by default, longer than most limits).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, options.requestTimeoutMs / 4)),
      },
    }) as Server;
    let active = 0;
    let drained: (() => void) | undefined;
    server.on('request', (_req, res) => {
      active++;
      res.on('close', () => {
        active--;
        if (active === 0) drained?.();
      });
    });
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new CifarError('USAGE', `port ${options.port} on ${options.host} is already in use`, { hint: 'choose another --port' })
          : new CifarError('IO', `cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err }),
      );
    });
    server.once('listening', () => {
      const port = (server.address() as AddressInfo).port;
      const host = options.host.includes(':') ? `[${options.host}]` : options.host;
      resolve({
        server,
        port,
        url: `http://${host}:${port}`,
        inFlight: () => active,
        close(drainMs) {
          const closed = new Promise<void>((done) => server.close(() => done()));
          server.closeIdleConnections();
          const idle = active === 0 ? Promise.resolve() : new Promise<void>((done) => (drained = done));
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<void>((done) => (timer = setTimeout(done, drainMs)));
          return Promise.race([idle, timeout]).then(() => {
            clearTimeout(timer);
            // Keep-alive sockets would otherwise hold the server open until they time out.
            server.closeAllConnections();
            return closed;
          });
        },
      });
    });
  });
}
