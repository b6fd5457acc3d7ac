import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Fake, line, waitFor, taskStream, quiet } from './fake.js';
import { Service, ApiError, MesgError, DefinitionMismatch, sectionKeys } from '../src/index.js';

let fake;
beforeEach(async () => { fake = await new Fake().start(); });
afterEach(async () => { await fake.close(); });

const make = (o = {}) => new Service({ endpoint: fake.url, token: 'tok', definition: null, maxBackoffMs: 200, logger: quiet, ...o });

test('tasks go to their handlers and results are posted', async () => {
  const hold = { done: false };
  const tasks = [
    { execution_id: 'e1', task: 'echo', inputs: { message: 'hi' } },
    { execution_id: 'e2', task: 'fail', inputs: {} },
    { execution_id: 'e3', task: 'nope', inputs: {} },
    { execution_id: 'e4', task: 'sync', inputs: { n: 1 } },
    { execution_id: 'e5', task: 'list', inputs: {} },
  ];
  fake.route('GET', '/v1/service/tasks', () => ({ stream: taskStream(tasks, hold) }));
  fake.route('POST', '/v1/service/results', () => [200, {}]);
  fake.route('POST', '/v1/service/events', () => [200, {}]);
  const s = make();
  s.task('echo', async (task) => {
    await new Promise((r) => setTimeout(r, 10));
    await s.emit('echoed', { m: task.inputs.message });
    return task.inputs;
  });
  s.task('fail', () => { throw new Error('bad input'); });
  const listening = s.listen({ sync: (t) => ({ n: t.inputs.n + 1 }), list: () => [1] });
  await waitFor(() => fake.calls('POST', '/v1/service/results').length === 5);
  s.stop();
  hold.done = true;
  await listening;
  const results = Object.fromEntries(fake.calls('POST', '/v1/service/results').map((r) => [r.body.execution_id, r.body]));
  assert.deepEqual(results.e1, { execution_id: 'e1', outputs: { message: 'hi' } });
  assert.deepEqual(results.e2, { execution_id: 'e2', error: 'bad input' });
  assert.match(results.e3.error, /no handler for task `nope`/);
  assert.deepEqual(results.e4.outputs, { n: 2 });
  assert.match(results.e5.error, /not an object/);
  assert.ok(fake.requests.every((r) => r.headers.authorization === 'Bearer tok'));
  assert.deepEqual(fake.calls('POST', '/v1/service/events').map((r) => r.body), [{ event: 'echoed', data: { m: 'hi' }, execution_id: 'e1' }]);
});

test('emit outside a handler has no execution unless given', async () => {
  fake.route('POST', '/v1/service/events', () => [200, {}]);
  const s = make();
  await s.emit('tick', { count: 1 });
  await s.emit('tick', { count: 2 }, 'abc');
  assert.deepEqual(fake.calls('POST', '/v1/service/events').map((r) => r.body), [
    { event: 'tick', data: { count: 1 } },
    { event: 'tick', data: { count: 2 }, execution_id: 'abc' },
  ]);
});

test('reconnects with backoff after errors and closed streams', async () => {
  const hold = { done: false };
  const attempts = [];
  fake.route('GET', '/v1/service/tasks', () => {
    attempts.push(Date.now());
    if (attempts.length === 1) return [503, { code: 'unavailable', message: 'starting' }];
    if (attempts.length === 2) return { stream: [line({ type: 'ready', service_hash: 'S', instance_hash: 'I' })] };
    if (attempts.length === 3) return { stream: ['{not json\n'] };
    return { stream: taskStream([{ execution_id: 'e9', task: 'echo', inputs: {} }], hold) };
  });
  fake.route('POST', '/v1/service/results', () => [200, {}]);
  const s = make();
  s.task('echo', () => ({ ok: true }));
  const listening = s.listen();
  await waitFor(() => fake.calls('POST', '/v1/service/results').length === 1);
  assert.equal(s.connected, true);
  s.stop();
  hold.done = true;
  await listening;
  assert.equal(attempts.length, 4);
  assert.ok(attempts[1] - attempts[0] >= 90, 'backoff between attempts');
});

test('a refused token ends listen', async () => {
  fake.route('GET', '/v1/service/tasks', () => [401, { code: 'unauthorized', message: 'bad token' }]);
  const s = make();
  s.task('echo', () => ({}));
  await assert.rejects(s.listen(), (e) => e instanceof ApiError && e.status === 401 && e.code === 'unauthorized');
});

test('results are retried while the node fails, and refusals are final', async () => {
  const answers = [[503, { code: 'x', message: 'restarting' }], [502, { code: 'x', message: 'gw' }], [200, {}]];
  fake.route('POST', '/v1/service/results', () => answers.shift());
  const s = make();
  await s.submitResult('e1', { outputs: { a: 1 } });
  assert.equal(fake.calls('POST', '/v1/service/results').length, 3);
  fake.route('POST', '/v1/service/results', () => [409, { code: 'execution_finished', message: 'timed out' }]);
  await assert.rejects(s.submitResult('e2', { error: 'late' }), (e) => e instanceof ApiError && e.status === 409);
  assert.equal(fake.calls('POST', '/v1/service/results').length, 4);
});

test('results are retried while the node is unreachable, then given up', async () => {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const s = new Service({ endpoint: `http://127.0.0.1:${port}`, token: 't', definition: null, resultRetryMs: 300, maxBackoffMs: 50, logger: quiet });
  const start = Date.now();
  await assert.rejects(s.submitResult('e1', { outputs: {} }), (e) => e instanceof MesgError && /gave up/.test(e.message));
  assert.ok(Date.now() - start >= 300);
});

test('concurrency is limited', async () => {
  const hold = { done: false };
  const tasks = Array.from({ length: 6 }, (_, i) => ({ execution_id: `e${i}`, task: 'slow', inputs: {} }));
  fake.route('GET', '/v1/service/tasks', () => ({ stream: taskStream(tasks, hold) }));
  fake.route('POST', '/v1/service/results', () => [200, {}]);
  let running = 0, peak = 0;
  const s = make({ maxConcurrency: 2 });
  const listening = s.listen({
    slow: async () => { running++; peak = Math.max(peak, running); await new Promise((r) => setTimeout(r, 100)); running--; return {}; },
  });
  await waitFor(() => fake.calls('POST', '/v1/service/results').length === 6);
  s.stop();
  hold.done = true;
  await listening;
  assert.equal(peak, 2);
});

const MESG_YML = `name: Demo   # a comment
tasks:
  # a comment line
  echo:
    inputs:
      message: {type: String}
  "say hi":
    outputs: {}
events:
  echoed:
    data: {m: {type: String}}
`;

test('handlers are checked against mesg.yml', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesg-js-'));
  const file = path.join(dir, 'mesg.yml');
  fs.writeFileSync(file, MESG_YML);
  const s = new Service({ endpoint: fake.url, token: 't', definition: file, logger: quiet });
  s.task('echo', () => ({})).task('other', () => ({}));
  await assert.rejects(s.listen(), (e) => e instanceof DefinitionMismatch && /does not declare: other/.test(e.message) && /without a handler: say hi/.test(e.message));
  assert.equal(fake.requests.length, 0);
  await assert.rejects(s.emit('nope', {}), /no event `nope`/);
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    assert.deepEqual(new Service({ endpoint: fake.url, token: 't' }).definition()?.tasks, ['echo', 'say hi']);
  } finally { process.chdir(cwd); }
});

test('fromEnv needs the node variables', () => {
  const saved = { ...process.env };
  try {
    delete process.env.MESG_ENDPOINT;
    assert.throws(() => Service.fromEnv(), /MESG_ENDPOINT is not set/);
    Object.assign(process.env, { MESG_ENDPOINT: 'http://x:1/', MESG_TOKEN: 't', MESG_SERVICE_HASH: 'S' });
    const s = Service.fromEnv({ definition: null });
    assert.deepEqual([s.endpoint, s.token, s.serviceHash], ['http://x:1', 't', 'S']);
  } finally { process.env = saved; }
});

test('the minimal YAML reader', () => {
  const cases = [
    ['tasks:\n  a: {}\n  b:\n    inputs: {}\n', ['a', 'b']],
    ["tasks: {a: {inputs: {x: {type: String}}}, 'b': {}}\n", ['a', 'b']],
    ['tasks: {}\n', []],
    ['name: x\n', []],
    ['tasks:\n    deep: {}\n    other: {}\nevents: {}\n', ['deep', 'other']],
    ['tasks: [a]\n', null],
    ['tasks: &anchor\n  a: {}\n', null],
  ];
  for (const [text, tasks] of cases) assert.deepEqual(sectionKeys(text, 'tasks'), tasks, text);
});
