// The Application side against a real mesg-node running the real `echo` service.
// Needs MESG_NODE_BIN, MESG_CLI_BIN, MESG_ECHO_DIR and Docker (sdk/test.sh sets them);
// skipped without them unless MESG_SDK_REQUIRE_NODE=1 (CI), where it fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, ApiError } from '../src/index.js';
import { quiet } from './fake.js';

const NEEDED = ['MESG_NODE_BIN', 'MESG_CLI_BIN', 'MESG_ECHO_DIR'];
const missing = NEEDED.filter((v) => !process.env[v]);
const skip = missing.length > 0 && process.env.MESG_SDK_REQUIRE_NODE !== '1' ? `no real node: set ${missing.join(', ')} (sdk/test.sh does)` : false;

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

const node = {};

before(async () => {
  if (skip) return;
  assert.deepEqual(missing, [], 'MESG_SDK_REQUIRE_NODE=1 but the node variables are unset');
  node.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesg-sdk-js-'));
  const api = await freePort();
  node.url = `http://127.0.0.1:${api}`;
  const log = fs.openSync(path.join(node.dir, 'node.log'), 'w');
  node.proc = spawn(process.env.MESG_NODE_BIN, ['--data-dir', node.dir, '--api', `127.0.0.1:${api}`,
    '--service-api', `0.0.0.0:${await freePort()}`, '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`], { stdio: ['ignore', log, log] });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await new Promise((r) => { const s = net.connect(api, '127.0.0.1', () => { s.end(); r(true); }); s.on('error', () => r(false)); });
    if (up) break;
    assert.ok(Date.now() < deadline && node.proc.exitCode === null, 'node API not up');
    await new Promise((r) => setTimeout(r, 50));
  }
  node.client = new Client({ url: node.url, dataDir: node.dir, logger: quiet });
  node.key = (await node.client.node()).public_key;
  execFileSync(process.env.MESG_CLI_BIN, ['--node', node.url, '--node-data-dir', node.dir, 'service', 'deploy', process.env.MESG_ECHO_DIR, '--start'], { stdio: 'pipe' });
  const until = Date.now() + 30_000;
  while (!(await node.client.instances()).some((i) => i.connected)) {
    assert.ok(Date.now() < until, 'echo never connected');
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(() => {
  if (!node.proc) return;
  node.proc.kill('SIGKILL');
  const label = `label=mesg.node=${node.key}`;
  const ids = (args) => execFileSync('docker', args, { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
  try {
    const cs = ids(['ps', '-aq', '--filter', label]);
    if (cs.length) execFileSync('docker', ['rm', '-f', '-v', ...cs], { stdio: 'ignore' });
    const ns = ids(['network', 'ls', '-q', '--filter', label]);
    if (ns.length) execFileSync('docker', ['network', 'rm', ...ns], { stdio: 'ignore' });
  } catch { /* best effort */ }
  fs.rmSync(node.dir, { recursive: true, force: true });
});

test('execute with wait and idempotency keys on a real node', { skip }, async () => {
  const c = node.client;
  const e = await c.execute('echo', 'echo', { message: 'from js' }, { wait: true });
  assert.equal(e.status, 'Completed');
  assert.deepEqual(e.outputs, { message: 'from js' });
  assert.equal((await c.execution(e.id)).status, 'Completed');
  const key = `js-${crypto.randomUUID()}`;
  const first = await c.execute('echo', 'echo', { message: 'once' }, { wait: true, idempotencyKey: key });
  const again = await c.execute('echo', 'echo', { message: 'once' }, { wait: true, idempotencyKey: key });
  assert.equal(again.id, first.id);
  assert.deepEqual([first.replayed, again.replayed], [false, true]);
  await assert.rejects(c.execute('echo', 'echo', { message: 'other' }, { idempotencyKey: key }), (err) => err instanceof ApiError && err.status === 422);
  const started = await c.execute('echo', 'sleep', { ms: 50 });
  assert.equal((await c.wait(started.id, 10_000)).status, 'Completed');
  assert.ok((await c.executions({ task: 'sleep' })).some((x) => x.id === started.id));
  await assert.rejects(c.execute('echo', 'no-such-task'), (err) => err instanceof ApiError && err.code === 'unknown_task');
});

test('follow events and executions on a real node', { skip }, async () => {
  const c = node.client;
  const marker = crypto.randomUUID();
  const events = (async () => {
    for await (const ev of c.followEvents({ service: 'echo', event: 'tick' })) if (ev.data.value === marker) return ev;
  })();
  const executions = (async () => {
    for await (const ex of c.followExecutions({ service: 'echo', task: 'tick', status: 'Completed' })) if (ex.inputs.value === marker) return ex;
  })();
  const found = [null, null];
  events.then((v) => { found[0] = v; });
  executions.then((v) => { found[1] = v; });
  const deadline = Date.now() + 20_000;
  while ((!found[0] || !found[1]) && Date.now() < deadline) {
    await c.execute('echo', 'tick', { value: marker }, { wait: true });
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(found[0]?.key, 'tick');
  assert.equal(found[1]?.status, 'Completed');
  assert.equal((await c.events({ service: 'echo', event: 'tick' }))[0].data.value, marker);
});

test('processes on a real node', { skip }, async () => {
  const c = node.client;
  const name = `js-${crypto.randomUUID().slice(0, 8)}`;
  const p = await c.createProcess(`
name: ${name}
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: mine
    filter: {path: value, eq: ${name}}
  - key: say
    task: {service: echo, task: echo, inputs: {message: {step: tick, path: value}}}
`);
  assert.equal(p.name, name);
  assert.ok((await c.processes()).some((x) => x.id === p.id));
  await c.execute('echo', 'tick', { value: name }, { wait: true });
  const deadline = Date.now() + 20_000;
  let runs;
  for (;;) {
    runs = await c.runs(p.id);
    if (runs.length && runs[0].status !== 'running') break;
    assert.ok(Date.now() < deadline, JSON.stringify(runs));
    await new Promise((r) => setTimeout(r, 200));
  }
  const run = await c.run(runs[0].id);
  assert.equal(run.status, 'completed');
  assert.ok(['tick', 'mine', 'say'].every((k) => k in run.steps));
  await c.deleteProcess(p.id);
  assert.ok(!(await c.processes()).some((x) => x.id === p.id));
});
