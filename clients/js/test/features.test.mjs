// What the issue "the client library, production grade" asks of the client, against real edges,
// Redis and the chat worker: no ghost rooms, server-joined rooms kept across a reconnect, a
// wrong URL said, history, rewind, ids on publish and send, RPC, resuming the user scope from
// welcome.offsets, MessagePack frames, and rpc calls resent with their id after a lost connection.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Ferrocast } from '../dist/esm/index.js';
import { msgpack } from '../dist/esm/msgpack.js';
import { startRedis, startEdge, token, eventually, emitter } from './harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const run = promisify(execFile);
const running = [];
after(() => running.forEach((p) => p.kill?.('SIGKILL') ?? p.stop?.()));

function client(url, options = {}) {
  const fc = new Ferrocast(url, { WebSocket, backoff: { min: 50, max: 500 }, ...options });
  running.push({ kill: () => fc.disconnect() });
  return fc;
}

const users = async (room) => (await room.presence()).map((c) => c.user).sort();

test('no ghost rooms: a leave before the socket opens or before the answer leaves nobody behind', { timeout: 60_000 }, async () => {
  const edge = await startEdge(['--presence-rooms', 'g*']);
  running.push(edge);
  const watcher = client(edge.url, { token: token('watcher') });
  const watched = watcher.room('g1');
  await watched.join();

  const early = client(edge.url, { token: token('early') });
  const earlyRoom = early.room('g1');
  const cancelled = earlyRoom.join().catch((e) => e.code);
  await earlyRoom.leave();
  assert.equal(await cancelled, 'LEFT');

  const late = client(edge.url, { token: token('late') });
  late.connect();
  await eventually('late connected', () => late.state === 'connected');
  const lateRoom = late.room('g1');
  const unanswered = lateRoom.join().catch((e) => e.code);
  await lateRoom.leave();
  assert.equal(await unanswered, 'LEFT');

  await eventually('early connected', () => early.state === 'connected');
  await eventually('only the watcher present', async () => (await users(watched)).join() === 'watcher');
  assert.equal(earlyRoom.joined, false);
  assert.equal(lateRoom.joined, false);
});

test('rooms a worker joined the client to: rejoined after a reconnect from their offset, or reported lost', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  running.push(redis);
  const a = await startEdge(['--redis-url', redis.url]);
  const b = await startEdge(['--redis-url', redis.url]);
  running.push(a, b);
  let next = 0;
  // The token allows `srv` but not `locked`: a worker's join needs no permission, a client's does.
  const fc = client(() => [a.url, b.url][next++ % 2], { token: token('wade', { rooms: ['srv'] }) });
  const got = [];
  const joins = [];
  const lost = [];
  fc.on('joined', (room) => room.on('tick', (data) => got.push(data)));
  fc.on('left', (room) => lost.push([room.name, room.error?.code]));
  fc.connect();
  await eventually('connected', () => fc.state === 'connected');
  for (const room of ['srv', 'locked']) {
    await emitter(['--redis-url', redis.url, 'join', '--client', fc.clientId, '--room', room]);
  }
  await eventually('joined by the worker', () => fc.room('srv').joined && fc.room('locked').joined);
  fc.room('srv').on('$joined', (info) => joins.push(info));
  const send = (n) => emitter(['--redis-url', redis.url, 'send', '--room', 'srv', '--event', 'tick', '--data', String(n)]);
  await send(1);
  await eventually('1', () => got.length === 1);
  a.kill('SIGKILL');
  await send(2);
  await eventually('rejoined', () => joins.length === 1);
  await send(3);
  await eventually('every message', () => got.length >= 3);
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(joins[0].recovered, true);
  await eventually('locked reported lost', () => lost.length === 1);
  assert.deepEqual(lost, [['locked', 'FORBIDDEN']]);
  assert.equal(fc.room('locked').state, 'error');
});

test('a wrong URL (HTTP 404 on upgrade) is reported, not looped over in silence', { timeout: 60_000 }, async () => {
  const edge = await startEdge();
  running.push(edge);
  const fc = client(`ws://127.0.0.1:${edge.port}/nope`, { token: token('x') });
  const failed = new Promise((resolve) => fc.on('error', resolve));
  const disconnected = new Promise((resolve) => fc.on('disconnected', resolve));
  fc.connect();
  const error = await failed;
  assert.equal(error.code, 'CONNECT_FAILED');
  assert.match(error.message, /\/nope: .*404/);
  assert.equal((await disconnected).error, error);
});

test('history pages, join with rewind, and publish ids that make retries harmless', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  running.push(redis);
  const edge = await startEdge(['--redis-url', redis.url]);
  running.push(edge);
  const writer = client(edge.url, { token: token('writer') });
  const room = writer.room('h');
  await room.join();
  const offsets = [];
  for (let n = 1; n <= 5; n++) offsets.push((await room.publish('n', n, { id: `msg-${n}` })).offset);
  // The same id again: stored once, answered with the first offset.
  assert.equal((await room.publish('n', 3, { id: 'msg-3' })).offset, offsets[2]);

  const reader = client(edge.url, { token: token('reader') });
  const page = await reader.room('h').history({ limit: 3 });
  assert.deepEqual(page.messages.map((m) => m.data), [3, 4, 5]);
  assert.equal(page.more, true);
  assert.equal(page.offset, offsets[4]);
  const older = await reader.room('h').history({ limit: 3, before: page.messages[0].offset });
  assert.deepEqual(older.messages.map((m) => m.data), [1, 2]);
  assert.equal(older.more, false);

  const got = [];
  reader.room('h').on('n', (data) => got.push(data));
  await reader.room('h').join({ rewind: 2 });
  await room.publish('n', 6);
  await eventually('rewound and live', () => got.length >= 3);
  assert.deepEqual(got, [4, 5, 6], 'the last two, then live, nothing twice');
});

test('rpc: a worker answers, refuses with data, or the call times out', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  running.push(redis);
  const edge = await startEdge(['--redis-url', redis.url, '--upstream-events', 'chat.*']);
  running.push(edge);
  const worker = spawn(path.join(root, 'target/debug/examples/chat_worker'), {
    env: { ...process.env, FERROCAST_REDIS_URL: redis.url },
    stdio: 'ignore',
  });
  running.push({ kill: () => worker.kill('SIGKILL') });
  const fc = client(edge.url, { token: token('rita') });
  assert.deepEqual(await fc.rpc('chat.echo', { x: [1, 'two'] }), { x: [1, 'two'] });
  const refused = await fc.rpc('chat.echo', null).catch((e) => e);
  assert.equal(refused.code, 'RPC_ERROR');
  assert.equal(refused.message, 'nothing to echo');
  assert.deepEqual(refused.data, { hint: 'send some data' });
  const started = Date.now();
  const late = await fc.rpc('chat.nobody-answers', 1, { timeout: 300 }).catch((e) => e);
  assert.equal(late.code, 'TIMEOUT');
  assert.ok(Date.now() - started < 2_000, 'the edge said TIMEOUT at the call timeout');
  // send with an id: the same id is one inbox entry, however often it is sent.
  const first = await fc.send('chat.note', { n: 1 }, { id: 'note-1' });
  assert.deepEqual(await fc.send('chat.note', { n: 1 }, { id: 'note-1' }), first);
  // As a retry after a reconnect is: from another connection of the same user.
  const again = client(edge.url, { token: token('rita') });
  assert.deepEqual(await again.send('chat.note', { n: 1 }, { id: 'note-1' }), first);
  const published = await again.room('rpc-room').join().then(() => again.room('rpc-room').publish('e', 1, { id: 'p-1' }));
  assert.deepEqual(await fc.room('rpc-room').join().then(() => fc.room('rpc-room').publish('e', 1, { id: 'p-1' })), published);
});

test('the user scope resumes from welcome.offsets when nothing arrived in it before the drop', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  running.push(redis);
  const edge = await startEdge(['--redis-url', redis.url]);
  running.push(edge);
  const note = (n) => emitter(['--redis-url', redis.url, 'send', '--user', 'uma', '--event', 'note', '--data', String(n)]);
  await note(1); // before the client: not for it
  const fc = client(edge.url, { token: token('uma') });
  const seen = [];
  fc.on('user', (event, data) => seen.push(data));
  fc.connect();
  await eventually('connected', () => fc.state === 'connected');
  edge.kill('SIGKILL');
  await eventually('disconnected', () => fc.state !== 'connected');
  await note(2);
  const again = await startEdge(['--redis-url', redis.url], edge.port);
  running.push(again);
  await eventually('the note published while away', () => seen.length >= 1);
  assert.deepEqual(seen, [2]);
});

test('MessagePack frames: rooms, publish, history and presence with the binary codec', { timeout: 60_000 }, async () => {
  const edge = await startEdge(['--presence-rooms', 'mp']);
  running.push(edge);
  const fc = client(edge.url, { token: token('mia', { info: { name: 'Mia' } }), codec: msgpack });
  const room = fc.room('mp');
  const got = [];
  room.on('big', (data) => got.push(data));
  await room.join();
  const data = { n: -7, big: 2 ** 40, pi: 3.25, s: 'héllo ✓', list: [true, null, { deep: 'x'.repeat(300) }] };
  await room.publish('big', data);
  await eventually('echo', () => got.length === 1);
  assert.deepEqual(got[0], data);
  assert.deepEqual((await room.history()).messages.map((m) => m.data), [data]);
  assert.deepEqual(await room.presence(), [{ client: fc.clientId, user: 'mia', info: { name: 'Mia' } }]);
});

/** How many calls and sends the inbox streams hold (every partition), read with redis-cli. */
async function inboxEntries(redis) {
  const cli = (...args) => run('redis-cli', ['-p', String(redis.port), ...args]).then(({ stdout }) => stdout.trim());
  let total = 0;
  for (const key of (await cli('--scan', '--pattern', '*inbox*')).split('\n').filter(Boolean)) {
    if ((await cli('TYPE', key)) === 'stream') total += Number(await cli('XLEN', key));
  }
  return total;
}

test('rpc with an id: a call whose connection is killed before the answer resolves once, the worker called once', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  running.push(redis);
  const args = ['--redis-url', redis.url, '--upstream-events', 'chat.*'];
  const a = await startEdge(args);
  const b = await startEdge(args);
  running.push(a, b);
  let next = 0;
  const frames = [];
  const fc = client(() => [a.url, b.url][next++ % 2], {
    token: token('rex'),
    debug: (what, frame) => what === 'send' && frame.type === 'rpc' && frames.push(frame),
  });
  fc.connect();
  await eventually('connected to a', () => fc.state === 'connected');
  // No worker yet: the call waits in the inbox while its connection dies.
  let settled = 0;
  const called = fc.rpc('chat.echo', { n: 42 }, { timeout: 30_000 }).finally(() => settled++);
  await eventually('the call in the inbox', async () => (await inboxEntries(redis)) === 1);
  a.kill('SIGKILL');
  await eventually('sent again on the new connection', () => frames.length === 2);
  assert.equal(frames[1].id, frames[0].id);
  assert.match(frames[0].id, /^[A-Za-z0-9_-]{21}$/);
  assert.ok(frames[1].timeout < frames[0].timeout);
  const worker = spawn(path.join(root, 'target/debug/examples/chat_worker'), {
    env: { ...process.env, FERROCAST_REDIS_URL: redis.url },
    stdio: 'ignore',
  });
  running.push({ kill: () => worker.kill('SIGKILL') });
  assert.deepEqual(await called, { n: 42 });
  assert.equal(settled, 1);
  assert.equal(frames.length, 2, 'not sent a third time');
  assert.equal(await inboxEntries(redis), 1, 'one call reached the workers');

  // Once answered, the same id (the same user, any connection) gets that answer, not a new call.
  const first = await fc.rpc('chat.time', null, { id: 'clock-1' });
  const other = client(b.url, { token: token('rex') });
  assert.deepEqual(await other.rpc('chat.time', null, { id: 'clock-1' }), first);
  assert.deepEqual(await fc.rpc('chat.time', null, { id: 'clock-1' }), first);
  assert.equal(await inboxEntries(redis), 2);
  // Another user's same id is another call.
  const stranger = client(b.url, { token: token('sam') });
  assert.ok((await stranger.rpc('chat.time', null, { id: 'clock-1' })).now >= first.now);
  assert.equal(await inboxEntries(redis), 3);
});
