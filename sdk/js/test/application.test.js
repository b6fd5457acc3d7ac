import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fake, quiet } from './fake.js';
import { Client, ApiError } from '../src/index.js';

let fake;
beforeEach(async () => { fake = await new Fake().start(); });
afterEach(async () => { await fake.close(); });

const sse = (...items) => items.map(([name, data]) => (name === null ? ': keep-alive\n\n' : `event: ${name}\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`));

test('token from the option, the environment or the data dir', async () => {
  fake.route('GET', '/v1/node', () => [200, { public_key: 'K' }]);
  const saved = { ...process.env };
  try {
    delete process.env.MESG_API_TOKEN;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesg-js-'));
    fs.writeFileSync(path.join(dir, 'api.token'), 'from-file\n');
    process.env.MESG_DATA_DIR = dir;
    assert.deepEqual(await new Client({ url: fake.url }).node(), { public_key: 'K' });
    process.env.MESG_API_TOKEN = 'from-env';
    await new Client({ url: fake.url }).node();
    await new Client({ url: fake.url, token: 'given' }).node();
  } finally { process.env = saved; }
  assert.deepEqual(fake.requests.map((r) => r.headers.authorization), ['Bearer from-file', 'Bearer from-env', 'Bearer given']);
});

test('execute with wait and an idempotency key', async () => {
  fake.route('POST', '/v1/executions', (r) => {
    const replay = fake.calls('POST', '/v1/executions').length > 1;
    return [replay ? 200 : 201, { id: 'e1', status: 'Completed', outputs: r.body.inputs }, replay ? { 'idempotent-replayed': 'true' } : {}];
  });
  const c = new Client({ url: fake.url, token: 't' });
  const e = await c.execute('echo', 'echo', { message: 'hi' }, { wait: true, waitMs: 5000, idempotencyKey: 'order-7', tags: ['a'] });
  assert.deepEqual(e.outputs, { message: 'hi' });
  assert.equal(e.replayed, false);
  assert.equal((await c.execute('echo', 'echo', { message: 'hi' }, { wait: true, idempotencyKey: 'order-7' })).replayed, true);
  const first = fake.calls('POST', '/v1/executions')[0];
  assert.equal(first.query, 'wait=true&wait_ms=5000');
  assert.equal(first.headers['idempotency-key'], 'order-7');
  assert.deepEqual(first.body, { service: 'echo', task: 'echo', inputs: { message: 'hi' }, tags: ['a'] });
});

test('errors carry the API code and details', async () => {
  fake.route('POST', '/v1/executions', () => [400, { code: 'invalid_inputs', message: 'inputs do not match', details: ['/message: not a string'] }]);
  await assert.rejects(new Client({ url: fake.url, token: 't' }).execute('echo', 'echo', { message: 1 }),
    (e) => e instanceof ApiError && e.status === 400 && e.code === 'invalid_inputs' && e.details[0] === '/message: not a string');
});

test('followEvents parses SSE, skips keepalives and lagged notices', async () => {
  fake.route('GET', '/v1/events/stream', () => ({
    contentType: 'text/event-stream',
    stream: sse([null], ['event', { key: 'tick', data: { count: 1 } }], ['lagged', '2 skipped'], ['event', { key: 'tick', data: { count: 2 } }]),
  }));
  const c = new Client({ url: fake.url, token: 't', logger: quiet });
  const got = [];
  for await (const e of c.followEvents({ service: 'echo', event: 'tick', reconnect: false })) got.push(e.data.count);
  assert.deepEqual(got, [1, 2]);
  assert.equal(fake.calls('GET', '/v1/events/stream')[0].query, 'service=echo&event=tick');
});

test('followExecutions reconnects when the stream breaks', async () => {
  let n = 0;
  fake.route('GET', '/v1/executions/stream', () => {
    n++;
    return { contentType: 'text/event-stream', stream: sse(['execution', { id: `e${n}`, status: 'Completed' }]) };
  });
  const c = new Client({ url: fake.url, token: 't', logger: quiet });
  const ids = [];
  for await (const e of c.followExecutions({ status: 'Completed' })) {
    ids.push(e.id);
    if (ids.length === 2) break;
  }
  assert.deepEqual(ids, ['e1', 'e2']);
});

test('processes', async () => {
  let created;
  fake.route('POST', '/v1/processes', (r) => { created = r.body; return [201, { id: 'p1', name: 'demo' }]; });
  fake.route('GET', '/v1/processes', () => [200, { processes: [{ id: 'p1' }] }]);
  fake.route('DELETE', '/v1/processes/p1', () => [200, { id: 'p1' }]);
  const c = new Client({ url: fake.url, token: 't' });
  assert.equal((await c.createProcess('name: demo\n', { X: '1' })).id, 'p1');
  assert.deepEqual(created, { definition: 'name: demo\n', env: { X: '1' } });
  assert.deepEqual((await c.processes()).map((p) => p.id), ['p1']);
  await c.deleteProcess('p1');
});
