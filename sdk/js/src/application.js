// The Application side: execute tasks on any service of the network, follow events and
// executions, manage processes, through a node's Application API (docs/openapi.json).
// @ts-check
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiError, TransportError, openStream, request, sleep } from './http.js';

export const DEFAULT_NODE = 'http://127.0.0.1:50052';

/** @param {Record<string, unknown>} params */
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

const enc = encodeURIComponent;

/**
 * @typedef {object} ClientOptions
 * @property {string} [url]  the node's API (default $MESG_NODE, else http://127.0.0.1:50052)
 * @property {string|null} [token]  its API token (default $MESG_API_TOKEN, else DATA_DIR/api.token)
 * @property {string} [dataDir]  a local node's data dir (default $MESG_DATA_DIR, else ~/.mesg)
 * @property {number} [timeoutMs]  longest silence of a call (default 30 s)
 * @property {{warn: (...a: any[]) => void}} [logger]
 */

/**
 * @typedef {object} ExecuteOptions
 * @property {boolean} [wait]  answer when the execution ends (or after waitMs)
 * @property {number} [waitMs]
 * @property {string} [idempotencyKey]  a retry with the same key and request answers the same execution (`replayed: true`)
 * @property {string[]} [tags]
 * @property {number} [timeoutMs]  overrides the task's timeout
 * @property {string} [parent]  parent execution id
 */

/**
 * A client of one node's Application API. Every answer is the API's JSON; errors
 * reject with an ApiError (status, code, details).
 */
export class Client {
  /** @param {ClientOptions} [options] */
  constructor(options = {}) {
    this.url = (options.url ?? process.env.MESG_NODE ?? DEFAULT_NODE).replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.log = options.logger ?? console;
    let token = options.token ?? process.env.MESG_API_TOKEN ?? null;
    if (!token) {
      const dir = options.dataDir ?? process.env.MESG_DATA_DIR ?? path.join(os.homedir(), '.mesg');
      try { token = fs.readFileSync(path.join(dir, 'api.token'), 'utf8').trim() || null; } catch { token = null; }
    }
    this.token = token;
  }

  /**
   * @param {string} method @param {string} p @param {{body?: unknown, headers?: Record<string,string>, timeoutMs?: number|null}} [o]
   */
  async call(method, p, o = {}) {
    const resp = await request(this.url, method, p, { token: this.token, body: o.body, headers: o.headers, timeoutMs: o.timeoutMs === undefined ? this.timeoutMs : o.timeoutMs });
    if (resp.status < 200 || resp.status > 299) throw ApiError.fromBody(resp.status, resp.body);
    return resp;
  }

  /** GET any API path (e.g. "/v1/peers") and return its JSON. @param {string} p */
  async get(p) { return (await this.call('GET', p)).json(); }

  node() { return this.get('/v1/node'); }
  async services() { return (await this.get('/v1/services')).services; }
  /** @param {string} id */
  service(id) { return this.get(`/v1/services/${enc(id)}`); }
  /** Services the network runs, with their providers. */
  async networkServices() { return (await this.get('/v1/network/services')).services; }
  async instances() { return (await this.get('/v1/instances')).instances; }
  /** @param {string} service @param {Record<string,string>} [env] */
  async startInstance(service, env = {}) { return (await this.call('POST', '/v1/instances', { body: { service, env } })).json(); }

  /**
   * Execute `task` of `service` (a hash or sid) on whichever node runs it.
   * @param {string} service @param {string} task @param {Record<string, any>} [inputs] @param {ExecuteOptions} [o]
   */
  async execute(service, task, inputs = {}, o = {}) {
    /** @type {Record<string, any>} */
    const body = { service, task, inputs };
    if (o.tags?.length) body.tags = o.tags;
    if (o.timeoutMs !== undefined) body.timeout_ms = o.timeoutMs;
    if (o.parent !== undefined) body.parent = o.parent;
    const headers = o.idempotencyKey !== undefined ? { 'idempotency-key': o.idempotencyKey } : undefined;
    const timeoutMs = o.wait ? (o.waitMs === undefined ? null : Math.max(this.timeoutMs, o.waitMs + 10_000)) : this.timeoutMs;
    const resp = await this.call('POST', '/v1/executions' + query({ wait: o.wait ? true : undefined, wait_ms: o.waitMs }), { body, headers, timeoutMs });
    const execution = resp.json();
    if (execution && typeof execution === 'object' && !('replayed' in execution)) {
      execution.replayed = resp.headers['idempotent-replayed'] === 'true';
    }
    return execution;
  }

  /** One execution (with its `diagnosis` while it waits for a provider). @param {string} id */
  execution(id) { return this.get(`/v1/executions/${enc(id)}`); }

  /** Wait until the execution ends (or timeoutMs passes; node default 60 s). @param {string} id @param {number} [timeoutMs] */
  async wait(id, timeoutMs) {
    const r = await this.call('GET', `/v1/executions/${enc(id)}/wait` + query({ timeout_ms: timeoutMs }), { timeoutMs: Math.max(this.timeoutMs, (timeoutMs ?? 60_000) + 10_000) });
    return r.json();
  }

  /** @param {string} id @param {string} [reason] */
  async cancel(id, reason) { return (await this.call('POST', `/v1/executions/${enc(id)}/cancel`, { body: reason ? { reason } : {} })).json(); }
  /** Why the execution is not running yet. @param {string} id */
  why(id) { return this.get(`/v1/executions/${enc(id)}/why`); }

  /**
   * Executions, newest first (one page of at most `limit`).
   * @param {{status?: string, service?: string, task?: string, tag?: string, parent?: string, limit?: number}} [f]
   */
  async executions(f = {}) { return (await this.get('/v1/executions' + query(f))).executions; }

  /**
   * Every change of a matching execution, as it happens: an endless async iterator
   * (break out of the loop to close the stream).
   * @param {{status?: string, service?: string, task?: string, tag?: string, parent?: string, reconnect?: boolean}} [f]
   */
  followExecutions(f = {}) {
    const { reconnect = true, ...filters } = f;
    return this.#sse('/v1/executions/stream' + query(filters), 'execution', reconnect);
  }

  /** Recent events, newest first. @param {{service?: string, event?: string, limit?: number}} [f] */
  async events(f = {}) { return (await this.get('/v1/events' + query(f))).events; }

  /**
   * Events as they are emitted anywhere in the network: an endless async iterator.
   * @param {{service?: string, event?: string, reconnect?: boolean}} [f]
   */
  followEvents(f = {}) {
    const { reconnect = true, ...filters } = f;
    return this.#sse('/v1/events/stream' + query(filters), 'event', reconnect);
  }

  async processes() { return (await this.get('/v1/processes')).processes; }
  /** @param {string} id */
  process(id) { return this.get(`/v1/processes/${enc(id)}`); }
  /**
   * Create a process from its YAML (docs/processes.md); the same definition twice gives
   * the same process.
   * @param {string} definition @param {Record<string,string>} [env]
   */
  async createProcess(definition, env = {}) { return (await this.call('POST', '/v1/processes', { body: { definition, env } })).json(); }
  /** @param {string} definition @param {Record<string,string>} [env] */
  async validateProcess(definition, env = {}) { return (await this.call('POST', '/v1/processes/validate', { body: { definition, env } })).json(); }
  /** @param {string} id */
  async deleteProcess(id) { await this.call('DELETE', `/v1/processes/${enc(id)}`); }
  /** @param {string} process */
  async runs(process) { return (await this.get(`/v1/processes/${enc(process)}/runs`)).runs; }
  /** @param {string} id */
  run(id) { return this.get(`/v1/runs/${enc(id)}`); }

  /**
   * @param {string} p @param {string} name @param {boolean} reconnect
   * @returns {AsyncGenerator<any>}
   */
  async *#sse(p, name, reconnect) {
    let backoff = 100;
    for (;;) {
      let stream;
      try {
        stream = await openStream(this.url, p, { token: this.token, accept: 'text/event-stream', idleMs: 60_000 });
      } catch (e) {
        if (!reconnect || !(e instanceof TransportError)) throw e;
        this.log.warn(`mesg: ${p}: ${e.message}; reconnecting in ${backoff} ms`);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 5_000);
        continue;
      }
      backoff = 100;
      try {
        let event = 'message';
        /** @type {string[]} */
        let data = [];
        for await (const line of stream.lines()) {
          if (line === '') {
            if (data.length && event === name) yield JSON.parse(data.join('\n'));
            else if (event === 'lagged') this.log.warn(`mesg: ${p}: this client fell behind, some items were skipped: ${data.join('\n')}`);
            event = 'message';
            data = [];
          } else if (line.startsWith(':')) {
            continue;
          } else {
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            let value = i < 0 ? '' : line.slice(i + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
        }
      } catch (e) {
        if (!reconnect || !(e instanceof TransportError)) throw e;
        this.log.warn(`mesg: ${p}: ${e.message}; reconnecting`);
      } finally {
        stream.close();
      }
      if (!reconnect) return;
      await sleep(backoff);
    }
  }
}
