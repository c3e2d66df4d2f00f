// The uWebSockets.js server: health, readiness and (as the pipeline grows) the balance
// queries of the public contract. Handlers answer from memory and never block on the
// engine thread.

import uWS from 'uWebSockets.js';

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly isReady: () => boolean;
  /** Extra fields of the /readyz answer (the partitions applied here). */
  readonly readyDetails?: () => object;
  // Registers the routes of the public contract; called before the catch-all 404.
  readonly routes?: (app: uWS.TemplatedApp) => void;
}

export interface HttpServer {
  readonly port: number;
  readonly app: uWS.TemplatedApp;
  close(): void;
}

export function json(res: uWS.HttpResponse, status: string, body: unknown): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify(body));
  });
}

export function listen(options: HttpServerOptions): Promise<HttpServer> {
  const app = uWS.App();
  app.get('/healthz', (res) => json(res, '200 OK', { status: 'ok' }));
  app.get('/readyz', (res) => {
    const ready = options.isReady();
    json(res, ready ? '200 OK' : '503 Service Unavailable', { status: ready ? 'ready' : 'not_ready', ...options.readyDetails?.() });
  });
  options.routes?.(app);
  app.any('/*', (res, req) => {
    json(res, '404 Not Found', { error: 'NOT_FOUND', message: `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}` });
  });
  return new Promise((resolve, reject) => {
    app.listen(options.host, options.port, (socket) => {
      if (socket === false) {
        reject(new Error(`cannot listen on ${options.host}:${options.port}: the port is taken or the address is not local; set TALLY_HTTP_PORT / TALLY_HTTP_HOST`));
        return;
      }
      const port = uWS.us_socket_local_port(socket);
      resolve({ port, app, close: () => uWS.us_listen_socket_close(socket) });
    });
  });
}
