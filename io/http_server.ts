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

/**
 * Answers JSON from outside a handler's synchronous part (after an await, a timer, a body
 * read): uWS needs the writes corked there, so they are packed into one send.
 */
export function json(res: uWS.HttpResponse, status: string, body: unknown): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify(body));
  });
}

const OK_STATUS = '200 OK';

// The answer being written by writeCorkedAnswer: cork() runs its callback before it returns,
// so a module-level slot replaces a closure allocated per request.
let corkedResponse: uWS.HttpResponse | undefined;
let corkedStatus = OK_STATUS;
let corkedBodyText = '';

function writeCorkedAnswer(): void {
  const res = corkedResponse!;
  const status = corkedStatus;
  const bodyText = corkedBodyText;
  corkedResponse = undefined;
  if (status !== OK_STATUS) res.writeStatus(status);
  res.writeHeader('content-type', 'application/json').end(bodyText);
}

/**
 * Answers JSON text, corked: the status, the header and the body go out in one send (with
 * pipelining, often several answers in one send, once the socket has backpressure). uWS's
 * docs say a handler's synchronous part is corked already, but this build (uws-js-unofficial
 * 20.30) is not: without cork() every write is its own sendto(2), three per answer (strace;
 * 18 µs of CPU per request instead of 7). A 200 writes no status: uWS writes
 * `HTTP/1.1 200 OK` itself before the first header, one native call fewer.
 */
export function answerJsonText(res: uWS.HttpResponse, status: string, bodyText: string): void {
  corkedResponse = res;
  corkedStatus = status;
  corkedBodyText = bodyText;
  res.cork(writeCorkedAnswer);
}

/** answerJsonText of JSON.stringify(body): errors and rare answers. */
export function answerJson(res: uWS.HttpResponse, status: string, body: unknown): void {
  answerJsonText(res, status, JSON.stringify(body));
}

export function listen(options: HttpServerOptions): Promise<HttpServer> {
  const app = uWS.App();
  app.get('/healthz', (res) => answerJson(res, '200 OK', { status: 'ok' }));
  app.get('/readyz', (res) => {
    const ready = options.isReady();
    answerJson(res, ready ? '200 OK' : '503 Service Unavailable', { status: ready ? 'ready' : 'not_ready', ...options.readyDetails?.() });
  });
  options.routes?.(app);
  app.any('/*', (res, req) => {
    answerJson(res, '404 Not Found', { error: 'NOT_FOUND', message: `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}` });
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
