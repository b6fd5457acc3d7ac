// A tiny in-process fake of a node's HTTP APIs, scripted per test.
import http from 'node:http';

export class Fake {
  constructor() {
    /** @type {Map<string, (req: any) => any>} */
    this.routes = new Map();
    /** @type {{method: string, path: string, query: string, headers: Record<string, any>, body: any}[]} */
    this.requests = [];
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', async () => {
        const raw = Buffer.concat(chunks).toString();
        const [path, query = ''] = (req.url ?? '').split('?');
        const r = { method: req.method ?? '', path, query, headers: req.headers, body: raw ? JSON.parse(raw) : null };
        this.requests.push(r);
        const fn = this.routes.get(`${req.method} ${path}`);
        const out = fn ? await fn(r) : [404, { code: 'not_found', message: path }];
        if (out && out.stream) {
          res.writeHead(out.status ?? 200, { 'content-type': out.contentType ?? 'application/x-ndjson' });
          try {
            for await (const chunk of out.stream) {
              if (res.destroyed) break;
              res.write(chunk);
            }
          } catch { /* client gone */ }
          res.end();
          return;
        }
        const [status, body, headers = {}] = out;
        const data = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
        res.end(data);
      });
    });
  }

  async start() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  route(method, path, fn) { this.routes.set(`${method} ${path}`, fn); }
  calls(method, path) { return this.requests.filter((r) => r.method === method && r.path === path); }

  async close() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

export const line = (v) => JSON.stringify(v) + '\n';

export async function waitFor(cond, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('condition not met in time');
}

/** ready, the tasks, then keepalives until `hold.done`. */
export async function* taskStream(tasks, hold) {
  yield line({ type: 'ready', service_hash: 'S', instance_hash: 'I' });
  for (const t of tasks) yield line({ type: 'task', ...t });
  while (!hold.done) {
    await new Promise((r) => setTimeout(r, 50));
    yield line({ type: 'keepalive' });
  }
}

export const quiet = { warn() {}, info() {}, error() {} };
