// HTTP plumbing shared by the Service and Application sides (node:http only).
// @ts-check
import http from 'node:http';
import https from 'node:https';

/** Anything the SDK cannot do: missing environment, a malformed stream, gave up retrying. */
export class MesgError extends Error {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = 'MesgError';
  }
}

/** The node could not be reached or the connection broke: worth a retry. */
export class TransportError extends MesgError {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = 'TransportError';
  }
}

/** The node answered with an error status; its JSON body gives code, message, details. */
export class ApiError extends MesgError {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {string[]} [details]
   */
  constructor(status, code, message, details = []) {
    super(`the node refused the request (${status} ${code}): ${message}` +
      (details.length ? '\n  ' + details.join('\n  ') : ''));
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.apiMessage = message;
    this.details = details;
  }

  /** @param {number} status @param {Buffer} body */
  static fromBody(status, body) {
    const text = body.toString('utf8');
    try {
      const v = JSON.parse(text);
      if (v && typeof v === 'object' && 'code' in v) {
        return new ApiError(status, String(v.code), String(v.message ?? ''), Array.isArray(v.details) ? v.details : []);
      }
    } catch { /* not JSON */ }
    return new ApiError(status, `http_${status}`, text.slice(0, 4096));
  }
}

/**
 * @typedef {{status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer, json(): any}} Response
 * @typedef {{token?: string|null, body?: unknown, headers?: Record<string,string>, timeoutMs?: number|null, accept?: string}} RequestOptions
 */

/** @param {string} base @param {string} path */
function target(base, path) {
  const url = new URL(base.replace(/\/+$/, '') + path);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new MesgError(`\`${base}\` is not an http(s) URL`);
  return url;
}

/** @param {RequestOptions} o @param {Buffer|null} data */
function headersOf(o, data) {
  /** @type {Record<string,string>} */
  const h = { accept: o.accept ?? 'application/json', 'user-agent': 'mesg-js' };
  if (o.token) h.authorization = `Bearer ${o.token}`;
  if (data) { h['content-type'] = 'application/json'; h['content-length'] = String(data.length); }
  return { ...h, ...(o.headers ?? {}) };
}

/**
 * Send a request and resolve with every answer (2xx or not); transport failures reject
 * with a TransportError. `timeoutMs` (default 30 s; null: none) bounds each silence.
 * @param {string} base @param {string} method @param {string} path @param {RequestOptions} [o]
 * @returns {Promise<Response>}
 */
export function request(base, method, path, o = {}) {
  const url = target(base, path);
  const data = o.body === undefined ? null : Buffer.from(JSON.stringify(o.body));
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers: headersOf(o, data), agent: false }, (res) => {
      /** @type {Buffer[]} */
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => (body.length ? JSON.parse(body.toString('utf8')) : null) });
      });
      res.on('error', (e) => reject(new TransportError(e.message, { cause: e })));
    });
    const timeout = o.timeoutMs === undefined ? 30_000 : o.timeoutMs;
    if (timeout !== null) req.setTimeout(timeout, () => req.destroy(new TransportError(`no answer in ${timeout} ms`)));
    req.on('error', (e) => reject(e instanceof MesgError ? e : new TransportError(`${method} ${url.pathname}: ${e.message}`, { cause: e })));
    req.end(data ?? undefined);
  });
}

/**
 * @typedef {{lines: () => AsyncGenerator<string>, close: () => void}} Stream
 */

/**
 * GET a streaming resource: resolves once the node answered 2xx (an ApiError otherwise).
 * `idleMs`: longest silence before the stream fails with a TransportError.
 * @param {string} base @param {string} path @param {{token?: string|null, accept: string, idleMs: number}} o
 * @returns {Promise<Stream>}
 */
export function openStream(base, path, o) {
  const url = target(base, path);
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method: 'GET', headers: headersOf(o, null), agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        /** @type {Buffer[]} */
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => reject(ApiError.fromBody(status, Buffer.concat(chunks))));
        res.on('error', (e) => reject(new TransportError(e.message, { cause: e })));
        return;
      }
      let closed = false;
      resolve({
        close() { closed = true; req.destroy(); },
        async *lines() {
          let buf = '';
          try {
            for await (const chunk of res) {
              buf += chunk.toString('utf8');
              let i;
              while ((i = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, i).replace(/\r$/, '');
                buf = buf.slice(i + 1);
                yield line;
              }
            }
          } catch (e) {
            if (closed) return;
            throw e instanceof MesgError ? e : new TransportError(`stream ${url.pathname}: ${/** @type {Error} */ (e).message}`, { cause: e });
          }
          if (!closed && !res.complete) throw new TransportError(`stream ${url.pathname} broke`);
        },
      });
    });
    req.setTimeout(o.idleMs, () => req.destroy(new TransportError(`nothing on ${url.pathname} for ${o.idleMs} ms`)));
    req.on('error', (e) => reject(e instanceof MesgError ? e : new TransportError(`GET ${url.pathname}: ${e.message}`, { cause: e })));
    req.end();
  });
}

/** @param {number} ms @param {AbortSignal} [signal] */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(undefined); }, { once: true });
  });
}
