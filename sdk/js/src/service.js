// The Service side: receive tasks from the node that runs this container, answer them,
// emit events (docs/service-api.md).
// @ts-check
import { AsyncLocalStorage } from 'node:async_hooks';
import path from 'node:path';
import { ApiError, MesgError, TransportError, openStream, request, sleep } from './http.js';
import { findDefinition, readDefinition } from './definition.js';

export const TASKS_PATH = '/v1/service/tasks';
export const RESULTS_PATH = '/v1/service/results';
export const EVENTS_PATH = '/v1/service/events';

/**
 * One task to run: `key` is the task's key in mesg.yml, `inputs` its checked inputs.
 * @typedef {{executionId: string, key: string, inputs: Record<string, any>}} Task
 */

/**
 * A handler returns the outputs (an object; undefined/null means {}), or throws to fail
 * the execution with the error's message. It may be async.
 * @typedef {(task: Task) => (Record<string, any>|null|undefined|Promise<Record<string, any>|null|undefined>)} Handler
 */

/**
 * @typedef {object} ServiceOptions
 * @property {string} endpoint  the node's service API (MESG_ENDPOINT)
 * @property {string} token  this instance's secret (MESG_TOKEN)
 * @property {string} [serviceHash]
 * @property {string} [instanceHash]
 * @property {number} [maxConcurrency]  tasks run at once (default 64); more wait in the stream
 * @property {string|null} [definition]  mesg.yml to check the handlers against; "auto" (default)
 *   looks in the working directory, then beside the program; null skips the check
 * @property {number} [resultRetryMs]  how long results and events are retried while the node is unreachable (default 10 min)
 * @property {number} [streamIdleMs]  longest silence on the task stream before reconnecting (default 60 s; the node sends a keepalive every 15 s)
 * @property {number} [maxBackoffMs]  longest wait between reconnections and retries (default 5 s)
 * @property {{warn: (...a: any[]) => void, info: (...a: any[]) => void, error: (...a: any[]) => void}} [logger]
 */

/** The handlers do not match the tasks the service's mesg.yml declares. */
export class DefinitionMismatch extends MesgError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'DefinitionMismatch';
  }
}

/** @type {AsyncLocalStorage<string>} the execution whose handler is running */
const current = new AsyncLocalStorage();

/** A connection to the node that runs this service instance. */
export class Service {
  /** @type {Map<string, Handler>} */
  #handlers = new Map();
  /** @type {import('./definition.js').Definition|null|undefined} */
  #definition = undefined;
  #stopped = false;
  /** @type {import('./http.js').Stream|null} */
  #stream = null;
  #stop = new AbortController();
  /** @type {Set<Promise<void>>} */
  #inflight = new Set();

  /** @param {ServiceOptions} options */
  constructor(options) {
    this.endpoint = options.endpoint.replace(/\/+$/, '');
    this.token = options.token;
    this.serviceHash = options.serviceHash ?? '';
    this.instanceHash = options.instanceHash ?? '';
    this.maxConcurrency = Math.max(1, options.maxConcurrency ?? 64);
    this.definitionPath = options.definition === undefined ? 'auto' : options.definition;
    this.resultRetryMs = options.resultRetryMs ?? 600_000;
    this.streamIdleMs = options.streamIdleMs ?? 60_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.log = options.logger ?? { warn: console.warn, info: console.log, error: console.error };
    /** True while the task stream is open and registered. */
    this.connected = false;
  }

  /**
   * Connect using the variables the node injects into the container.
   * @param {Partial<ServiceOptions>} [options]
   */
  static fromEnv(options = {}) {
    /** @param {string} name */
    const need = (name) => {
      const v = process.env[name];
      if (!v) throw new MesgError(`environment variable ${name} is not set: this program must be started by a mesg node`);
      return v;
    };
    return new Service({
      ...options,
      endpoint: need('MESG_ENDPOINT'),
      token: need('MESG_TOKEN'),
      serviceHash: process.env.MESG_SERVICE_HASH ?? '',
      instanceHash: process.env.MESG_INSTANCE_HASH ?? '',
    });
  }

  /**
   * Make `fn` the handler of task `key`; returns the service, to chain.
   * @param {string} key @param {Handler} fn
   */
  task(key, fn) {
    if (typeof fn !== 'function') throw new TypeError(`the handler of task \`${key}\` is not a function`);
    this.#handlers.set(key, fn);
    return this;
  }

  /** The mesg.yml the handlers are checked against, if one was found. */
  definition() {
    if (this.#definition === undefined) {
      this.#definition = null;
      if (this.definitionPath === 'auto') {
        const prog = process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : process.cwd();
        const file = findDefinition([process.cwd(), prog]);
        if (file) this.#definition = readDefinition(file);
      } else if (this.definitionPath) {
        try {
          this.#definition = readDefinition(this.definitionPath);
        } catch (e) {
          throw new DefinitionMismatch(`${this.definitionPath}: ${/** @type {Error} */ (e).message} (definition: null skips the check)`);
        }
      }
    }
    return this.#definition;
  }

  /** Throw DefinitionMismatch when a handler has no task in mesg.yml or a task no handler. */
  checkHandlers() {
    const d = this.definition();
    if (!d || !d.tasks) return;
    const declared = new Set(d.tasks);
    const extra = [...this.#handlers.keys()].filter((k) => !declared.has(k)).sort();
    const missing = d.tasks.filter((k) => !this.#handlers.has(k)).sort();
    const problems = [];
    if (extra.length) problems.push(`handlers for tasks that ${d.path} does not declare: ${extra.join(', ')}`);
    if (missing.length) problems.push(`tasks of ${d.path} without a handler: ${missing.join(', ')}`);
    if (problems.length) throw new DefinitionMismatch(`${problems.join('; ')} (declared: ${[...declared].sort().join(', ') || 'none'})`);
  }

  /**
   * Receive tasks until stop(), run each (at most maxConcurrency at once) and post its
   * result. Reconnects with backoff whenever the stream breaks; rejects with an ApiError
   * if the node refuses the token (401/403), and with DefinitionMismatch before
   * connecting if the handlers do not match mesg.yml.
   * @param {Record<string, Handler>} [handlers]
   */
  async listen(handlers = {}) {
    for (const [k, fn] of Object.entries(handlers)) this.task(k, fn);
    if (this.#handlers.size === 0) throw new DefinitionMismatch('no handler: use service.task(KEY, fn) or listen({KEY: fn})');
    this.checkHandlers();
    let backoff = 100;
    while (!this.#stopped) {
      try {
        await this.#streamOnce();
        if (this.#stopped) break;
        this.log.warn('mesg: task stream closed by the node; reconnecting');
        backoff = 100;
      } catch (e) {
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) throw e;
        if (!(e instanceof MesgError)) throw e;
        if (this.#stopped) break;
        this.log.warn(`mesg: task stream: ${e.message}; retrying in ${backoff} ms`);
      }
      this.connected = false;
      await sleep(backoff, this.#stop.signal);
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
    }
    this.connected = false;
    await Promise.allSettled([...this.#inflight]);
  }

  /** Stop listen(); it resolves once the running handlers posted their results. */
  stop() {
    this.#stopped = true;
    this.#stop.abort();
    this.#stream?.close();
  }

  async #streamOnce() {
    const stream = await openStream(this.endpoint, TASKS_PATH, { token: this.token, accept: 'application/x-ndjson', idleMs: this.streamIdleMs });
    this.#stream = stream;
    let running = 0;
    /** @type {(() => void)[]} */
    const waiters = [];
    try {
      if (this.#stopped) return;
      for await (const line of stream.lines()) {
        if (!line.trim()) continue;
        let msg;
        try { msg = JSON.parse(line); } catch (e) {
          throw new MesgError(`the task stream sent a malformed line: ${/** @type {Error} */ (e).message}`);
        }
        if (msg?.type === 'ready') {
          this.connected = true;
          this.log.info('mesg: connected to the node; waiting for tasks');
        } else if (msg?.type === 'keepalive') {
          // nothing
        } else if (msg?.type === 'task') {
          while (running >= this.maxConcurrency) await new Promise((r) => waiters.push(() => r(undefined)));
          if (this.#stopped) return;
          running++;
          const task = { executionId: String(msg.execution_id), key: String(msg.task), inputs: msg.inputs ?? {} };
          const done = this.#run(task, () => { running--; waiters.shift()?.(); });
          this.#inflight.add(done);
          done.finally(() => this.#inflight.delete(done));
        } else {
          throw new MesgError(`the task stream sent a malformed line: ${line.slice(0, 200)}`);
        }
      }
    } finally {
      this.#stream = null;
      stream.close();
    }
  }

  /** @param {Task} task @param {() => void} release */
  async #run(task, release) {
    /** @type {Record<string, any>|undefined} */
    let outputs;
    /** @type {string|undefined} */
    let error;
    try {
      const handler = this.#handlers.get(task.key);
      if (!handler) throw new MesgError(`this service has no handler for task \`${task.key}\``);
      const result = await current.run(task.executionId, () => handler(task));
      if (result !== undefined && result !== null && (typeof result !== 'object' || Array.isArray(result))) {
        throw new MesgError(`the handler of \`${task.key}\` returned ${Array.isArray(result) ? 'an array' : typeof result}, not an object of outputs`);
      }
      outputs = result ?? {};
    } catch (e) {
      error = (e instanceof Error ? e.message : String(e)) || 'error';
    } finally {
      release();
    }
    try {
      await this.submitResult(task.executionId, error === undefined ? { outputs } : { error });
    } catch (e) {
      this.log.error(`mesg: result of ${task.executionId} not delivered: ${/** @type {Error} */ (e).message}`);
    }
  }

  /**
   * Post an execution's result: its outputs, or an error. Retried while the node is
   * unreachable or answers 5xx; a refusal (unknown, foreign or finished execution,
   * invalid outputs) rejects with an ApiError.
   * @param {string} executionId @param {{outputs?: Record<string, any>, error?: string}} result
   */
  async submitResult(executionId, result) {
    /** @type {Record<string, any>} */
    const body = { execution_id: executionId };
    if (result.error !== undefined) body.error = result.error;
    else body.outputs = result.outputs ?? {};
    await this.#postWithRetry(RESULTS_PATH, body);
  }

  /**
   * Emit an event (its data is checked by the node against mesg.yml). Inside a handler
   * the event is attributed to the handler's execution unless `executionId` says otherwise.
   * @param {string} event @param {Record<string, any>} [data] @param {string} [executionId]
   */
  async emit(event, data = {}, executionId) {
    const d = this.definitionPath ? this.definition() : null;
    if (d?.events && !d.events.includes(event)) {
      throw new DefinitionMismatch(`${d.path} declares no event \`${event}\` (declared: ${d.events.join(', ') || 'none'})`);
    }
    /** @type {Record<string, any>} */
    const body = { event, data };
    const id = executionId ?? current.getStore();
    if (id !== undefined) body.execution_id = id;
    await this.#postWithRetry(EVENTS_PATH, body);
  }

  /** @param {string} path @param {Record<string, any>} body */
  async #postWithRetry(path, body) {
    const deadline = Date.now() + this.resultRetryMs;
    let backoff = 50;
    for (;;) {
      let reason;
      try {
        const resp = await request(this.endpoint, 'POST', path, { token: this.token, body });
        if (resp.status >= 200 && resp.status < 300) return;
        if (resp.status < 500) throw ApiError.fromBody(resp.status, resp.body);
        reason = `node answered ${resp.status}`;
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        reason = e.message;
      }
      if (Date.now() >= deadline) throw new MesgError(`${path}: gave up after ${this.resultRetryMs} ms: ${reason}`);
      this.log.warn(`mesg: ${path}: ${reason}; retrying in ${backoff} ms`);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
    }
  }
}
