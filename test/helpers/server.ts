import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FileServerOptions {
  /** Honour Range requests (default true). */
  ranges?: boolean;
  /** Drop the connection after this many body bytes on the first N responses. */
  dropAfterBytes?: number;
  dropTimes?: number;
  /** Answer the first N requests with this status (e.g. 503). */
  failFirst?: { times: number; status: number };
  /** Redirect these paths to others. */
  redirects?: Record<string, string>;
  /** Stop sending (but keep the connection open) after this many bytes. */
  stallAfterBytes?: number;
}

export interface RequestLog {
  path: string;
  range: string | undefined;
  status: number;
}

export interface TestServer {
  url: string;
  /** The live options: change them between requests to change the server's behaviour. */
  options: FileServerOptions;
  requests: RequestLog[];
  close: () => Promise<void>;
}

/**
 * A loopback HTTP server serving in-memory files, able to misbehave on purpose: drop or stall
 * connections mid-body, fail with 5xx, redirect, or ignore Range.
 */
export async function startFileServer(files: Record<string, Buffer>, options: FileServerOptions = {}): Promise<TestServer> {
  const requests: RequestLog[] = [];
  let drops = 0;
  let failures = 0;
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    const log = (status: number) => requests.push({ path, range: req.headers.range, status });
    if (options.failFirst && failures < options.failFirst.times) {
      failures++;
      log(options.failFirst.status);
      res.writeHead(options.failFirst.status).end('try later');
      return;
    }
    const redirect = options.redirects?.[path];
    if (redirect) {
      log(302);
      res.writeHead(302, { location: redirect }).end();
      return;
    }
    const body = files[path];
    if (!body) {
      log(404);
      res.writeHead(404).end('not found');
      return;
    }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && options.ranges !== false) {
      start = Number(m[1]);
      if (start >= body.length) {
        log(416);
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      log(206);
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'accept-ranges': 'bytes' });
    } else {
      log(200);
      res.writeHead(200, { 'content-length': body.length, ...(options.ranges === false ? {} : { 'accept-ranges': 'bytes' }) });
    }
    const rest = body.subarray(start);
    if (options.stallAfterBytes !== undefined) {
      res.write(rest.subarray(0, options.stallAfterBytes));
      return; // never ends: the client has to give up or be interrupted
    }
    if (options.dropAfterBytes !== undefined && drops < (options.dropTimes ?? 1)) {
      drops++;
      // The client must have read and saved the bytes before the drop: 20 ms was too short with both cores busy
      // (the file was still empty, so the retry started over instead of resuming).
      res.write(rest.subarray(0, options.dropAfterBytes), () => setTimeout(() => res.socket?.destroy(), 250));
      return;
    }
    res.end(rest);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    options,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
