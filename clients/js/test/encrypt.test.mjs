// Payload encryption (protocol part E, `@ferrocast/client/encrypt`): the frame crypto against
// known answers and Node's own `crypto`; the socket wrapper against a fake edge whose half is
// written with Node's `crypto`; and end to end against an edge that encrypts (rooms, publish,
// presence, history, RPC, MessagePack, a reconnect with a new key, --require-encryption), with
// every frame on the wire checked to be sealed.
//
// The end-to-end tests need an edge with encryption. Until the edge's `encryption` branch is
// merged, run them with FERROCAST_EDGE_BIN=<that branch's target/debug/edge>; against an edge
// without it they are skipped, saying so.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createECDH, webcrypto } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Ferrocast } from '../dist/esm/index.js';
import { encrypt, seal, unseal, nonce, agree, toBase64, fromBase64, EDGE_TO_CLIENT, CLIENT_TO_EDGE } from '../dist/esm/encrypt.js';
import { msgpack, decode as unpack } from '../dist/esm/msgpack.js';
import { FakeSocket, welcome } from './support/fake-socket.mjs';
import { edgeSession, nodeSeal, nodeOpen, iv, INFO } from './support/edge-crypto.mjs';
import { startRedis, startEdge, token, eventually, offersEncryption, EDGE_BIN } from './harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const running = [];
after(() => running.splice(0).forEach((p) => p.kill?.('SIGKILL') ?? p.stop?.()));

const aesKey = (raw) => webcrypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
const hex = (bytes) => Buffer.from(bytes).toString('hex');

// ---- The frame crypto ----

test('frame crypto: nonces are 4 direction bytes and an 8-byte big-endian counter', () => {
  assert.equal(hex(nonce(EDGE_TO_CLIENT, 0)), '000000010000000000000000');
  assert.equal(hex(nonce(CLIENT_TO_EDGE, 1)), '000000020000000000000001');
  assert.equal(hex(nonce(CLIENT_TO_EDGE, 2 ** 40 + 7)), '000000020000010000000007');
  assert.equal(hex(nonce(EDGE_TO_CLIENT, Number.MAX_SAFE_INTEGER)), '00000001001fffffffffffff');
  for (const n of [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 52 + 3]) assert.deepEqual(Buffer.from(nonce(2, n)), iv(2, n));
});

test('frame crypto: known answers (NIST AES-256-GCM test case 14) and the same bytes as Node crypto', async () => {
  // Key and nonce of zeros, 16 zero bytes: the published ciphertext and tag.
  const zero = await aesKey(new Uint8Array(32));
  const sealed = await seal(zero, 0, 0, new Uint8Array(16));
  assert.equal(hex(sealed), 'cea7403d4d606b6e074ec5d3baf39d18' + 'd0d1c8a799996bf0265b98b5d48ab919');
  assert.deepEqual(await unseal(zero, 0, 0, sealed), new Uint8Array(16));

  // A fixed key, both directions, counters past 32 bits: what Node's AES-GCM writes.
  const raw = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
  const key = await aesKey(raw);
  const frame = Buffer.from(JSON.stringify({ type: 'msg', scope: 'room', room: 'r', event: 'e', data: { text: 'héllo ✓' } }));
  for (const [direction, n] of [[EDGE_TO_CLIENT, 0], [CLIENT_TO_EDGE, 0], [CLIENT_TO_EDGE, 5], [EDGE_TO_CLIENT, 2 ** 33 + 1]]) {
    const ours = await seal(key, direction, n, frame);
    assert.equal(hex(ours), hex(nodeSeal(Buffer.from(raw), direction, n, frame)), `direction ${direction}, n ${n}`);
    assert.equal(ours.length, frame.length + 16, 'ciphertext then the 16-byte tag');
    assert.deepEqual(Buffer.from(await unseal(key, direction, n, nodeSeal(Buffer.from(raw), direction, n, frame))), frame);
  }
  // Another counter, another direction, or one flipped bit: it does not open.
  const sealedFrame = await seal(key, CLIENT_TO_EDGE, 5, frame);
  await assert.rejects(unseal(key, CLIENT_TO_EDGE, 6, sealedFrame));
  await assert.rejects(unseal(key, EDGE_TO_CLIENT, 5, sealedFrame));
  const flipped = Uint8Array.from(sealedFrame);
  flipped[flipped.length - 1] ^= 1;
  await assert.rejects(unseal(key, CLIENT_TO_EDGE, 5, flipped));
});

test('frame crypto: ECDH P-256 and HKDF-SHA256 give the key Node derives', async () => {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const ours = Buffer.from(await webcrypto.subtle.exportKey('raw', pair.publicKey));
  assert.equal(ours.length, 65);
  assert.equal(ours[0], 4, 'an uncompressed point');
  const edge = edgeSession(ours.toString('base64'));
  const key = await agree(pair.privateKey, fromBase64(edge.hello.key), fromBase64(edge.hello.salt));
  const frame = Buffer.from('{"type":"ping","ref":1}');
  assert.equal(hex(await seal(key, CLIENT_TO_EDGE, 3, frame)), hex(nodeSeal(edge.key, CLIENT_TO_EDGE, 3, frame)));
  assert.equal(INFO, 'ferrocast/v1 aes-256-gcm');
});

test('frame crypto: base64 round trips, large buffers included', () => {
  for (const size of [0, 1, 2, 3, 65, 100_000]) {
    const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 255);
    const text = toBase64(bytes);
    assert.equal(text, Buffer.from(bytes).toString('base64'));
    assert.deepEqual(fromBase64(text), bytes);
    assert.deepEqual(fromBase64(text.replace(/=+$/, '')), bytes, 'read without padding too');
  }
});

// ---- The socket wrapper against a fake edge (Node crypto) ----

const clients = [];
beforeEach(() => {
  FakeSocket.all = [];
  clients.splice(0).forEach((c) => c.disconnect());
});
after(() => clients.splice(0).forEach((c) => c.disconnect()));

function fakeClient(options = {}) {
  const made = new Ferrocast('ws://edge/ws', { WebSocket: FakeSocket, token: 't', backoff: { min: 0, max: 0 }, lifecycle: false, encrypt, ...options });
  clients.push(made);
  return made;
}

/** Connects through the fake socket: the auth frame's key answered by a Node-crypto edge. */
async function fakeConnect(fcl) {
  fcl.connect();
  await eventually('a socket', () => FakeSocket.all.length > 0, 5_000);
  const ws = FakeSocket.last;
  ws.open();
  await eventually('auth', () => ws.sent.length === 1, 5_000);
  const auth = ws.next();
  assert.equal(auth.type, 'auth');
  assert.equal(auth.token, 't');
  const edge = edgeSession(auth.encrypt.key);
  ws.receive(welcome({ encrypt: edge.hello }));
  await eventually('connected', () => fcl.state === 'connected', 5_000);
  return { ws, edge };
}

/** The next frame the client sent, opened. */
const nextSealed = async (ws, edge) => edge.open(await eventually('a frame', () => ws.next(), 5_000));

test('wrapper: the auth frame carries the public key; every later frame is sealed both ways, counters in order', { timeout: 30_000 }, async () => {
  const fcl = fakeClient();
  const { ws, edge } = await fakeConnect(fcl);
  const key = Buffer.from(ws.sent[0].encrypt.key, 'base64');
  assert.equal(key.length, 65);
  assert.equal(key[0], 4);
  assert.deepEqual(Object.keys(ws.sent[0]).sort(), ['encrypt', 'token', 'type']);

  const room = fcl.room('r');
  const got = [];
  room.on('e', (data) => got.push(data));
  const joined = room.join();
  const join = await nextSealed(ws, edge);
  assert.deepEqual([join.type, join.room], ['join', 'r']);
  ws.receive(edge.seal({ type: 'joined', room: 'r', ref: join.ref, offset: null, recovered: false }));
  await joined;
  // Many requests at once: sealed with counters in the order they were asked.
  const published = Array.from({ length: 20 }, (_, i) => room.publish('e', { i }));
  const publishes = [];
  for (let i = 0; i < 20; i++) publishes.push(await nextSealed(ws, edge));
  assert.deepEqual(publishes.map((f) => f.data.i), [...Array(20).keys()]);
  for (const f of publishes) ws.receive(edge.seal({ type: 'ack', ref: f.ref, offset: `o${f.data.i}` }));
  assert.deepEqual((await Promise.all(published)).map((a) => a.offset), publishes.map((f) => `o${f.data.i}`));
  for (let i = 0; i < 5; i++) {
    ws.receive(edge.seal({ type: 'msg', scope: 'room', room: 'r', event: 'e', data: { n: i }, offset: `m${i}`, id: `id${i}`, ts: 1 }));
  }
  await eventually('the messages, in order', () => got.length === 5, 5_000);
  assert.deepEqual(got, [0, 1, 2, 3, 4].map((n) => ({ n })));
  assert.ok(ws.sent.slice(1).every((f) => f.type === 'enc' && Object.keys(f).length === 3));
});

test('wrapper: a welcome without the edge\'s key stops the client (CLOSED, 4004) and nothing goes out in the clear', { timeout: 30_000 }, async () => {
  const fcl = fakeClient();
  const disconnected = new Promise((resolve) => fcl.on('disconnected', resolve));
  const published = fcl.room('r').publish('e', { secret: 1 }).catch((e) => e);
  await eventually('a socket', () => FakeSocket.all.length > 0, 5_000);
  const ws = FakeSocket.last;
  ws.open();
  await eventually('auth', () => ws.sent.length === 1, 5_000);
  ws.receive(welcome());
  const { code, error } = await disconnected;
  assert.equal(code, 4004);
  assert.equal(error.code, 'CLOSED');
  assert.equal((await published).code, 'CLOSED');
  assert.equal(ws.readyState, 3, 'the socket was closed');
  assert.equal(fcl.state, 'disconnected');
  assert.equal(FakeSocket.all.length, 1, 'not retried');
  assert.deepEqual(ws.sent.map((f) => f.type), ['auth']);
});

test('wrapper: a frame that does not open, out of sequence or in the clear closes the connection (1008), which reconnects with a new key', { timeout: 30_000 }, async () => {
  const bad = [
    (edge) => ({ ...edge.seal({ type: 'pong' }), c: Buffer.from(Buffer.from(edge.seal({ type: 'pong' }).c, 'base64').map((b) => b ^ 1)).toString('base64') }),
    (edge) => (edge.seal({ type: 'pong' }), edge.seal({ type: 'pong' })), // n skips one
    () => ({ type: 'pong' }),
  ];
  for (const make of bad) {
    FakeSocket.all = [];
    const fcl = fakeClient();
    const { ws, edge } = await fakeConnect(fcl);
    const disconnected = new Promise((resolve) => fcl.on('disconnected', resolve));
    ws.receive(make(edge));
    const { code } = await disconnected;
    assert.equal(code, 1008);
    assert.equal(ws.readyState, 3);
    await eventually('a new socket', () => FakeSocket.all.length === 2, 5_000);
    FakeSocket.last.open();
    await eventually('auth again', () => FakeSocket.last.sent.length === 1, 5_000);
    assert.notEqual(FakeSocket.last.sent[0].encrypt.key, ws.sent[0].encrypt.key, 'a key per connection');
    fcl.disconnect();
  }
});

// ---- End to end, against an edge that encrypts ----

let redis, edge, offered, reason;
const args = () => ['--redis-url', redis.url, '--upstream-events', 'chat.*', '--presence-rooms', '*', '--presence-events', '*'];
before(async () => {
  redis = await startRedis();
  running.push(redis);
  edge = await startEdge(args());
  running.push(edge);
  offered = await offersEncryption(edge.url);
  reason = `the edge ${EDGE_BIN} does not offer encryption (set FERROCAST_EDGE_BIN to an edge with protocol part E)`;
  if (!offered) {
    console.log(`# skipping the end-to-end encryption tests: ${reason}`);
    return;
  }
  const worker = spawn(path.join(root, 'target/debug/examples/chat_worker'), {
    env: { ...process.env, FERROCAST_REDIS_URL: redis.url },
    stdio: 'ignore',
  });
  running.push({ kill: () => worker.kill('SIGKILL') });
});

/** A `ws` WebSocket that keeps every frame either way, as the wire carries it. */
function recording() {
  const wire = [];
  class Recording extends WebSocket {
    constructor(...a) {
      super(...a);
      const conn = { out: [], in: [] };
      wire.push(conn);
      this.on('message', (data, binary) => conn.in.push(binary ? Buffer.from(data) : String(data)));
      const send = this.send.bind(this);
      this.send = (data) => (conn.out.push(typeof data === 'string' ? data : Buffer.from(data)), send(data));
    }
  }
  return { Recording, wire };
}

function e2eClient(url, options = {}) {
  const fcl = new Ferrocast(url, { WebSocket, backoff: { min: 50, max: 500 }, ...options });
  running.push({ kill: () => fcl.disconnect() });
  return fcl;
}

/** Checks one connection's recorded frames: the auth (with a key) and the welcome (with the
 * edge's) in the clear, every other frame an `enc` frame with counters 0, 1, 2...; no secret
 * anywhere. Returns how many sealed frames went each way. */
function checkWire(conn, { binary = false, secrets = [] } = {}) {
  const parse = (f) => (binary ? unpack(new Uint8Array(f)) : JSON.parse(f));
  const out = conn.out.map(parse);
  const inn = conn.in.map(parse);
  assert.equal(out[0].type, 'auth');
  assert.equal(Buffer.from(out[0].encrypt.key, 'base64').length, 65);
  assert.equal(inn[0].type, 'welcome');
  assert.equal(Buffer.from(inn[0].encrypt.salt, 'base64').length, 32);
  for (const [frames, what] of [[out.slice(1), 'client → edge'], [inn.slice(1), 'edge → client']]) {
    frames.forEach((f, i) => {
      assert.deepEqual([f.type, f.n], ['enc', i], `${what} frame ${i}`);
      assert.ok(binary ? f.c instanceof Uint8Array : typeof f.c === 'string');
    });
  }
  const everything = [...conn.out, ...conn.in].map((f) => (binary ? Buffer.from(f).toString('latin1') : f)).join('\n');
  for (const secret of secrets) assert.ok(!everything.includes(secret), `${secret} on the wire`);
  return { out: out.length - 1, in: inn.length - 1 };
}

test('encrypted end to end: join, publish, receive, presence, history and rpc, with a plain member in the room', { timeout: 60_000 }, async (t) => {
  if (!offered) return t.skip(reason);
  const { Recording, wire } = recording();
  const alice = e2eClient(edge.url, { token: token('alice', { info: { name: 'Alice' } }), WebSocket: Recording, encrypt });
  const bob = e2eClient(edge.url, { token: token('bob') });
  const mine = alice.room('secret');
  const theirs = bob.room('secret');
  const aliceGot = [];
  const bobGot = [];
  const joins = [];
  mine.on('chat.line', (data) => aliceGot.push(data));
  mine.on('$presence_join', (c) => joins.push(c.user));
  theirs.on('chat.line', (data) => bobGot.push(data));
  await mine.join();
  await theirs.join();
  await mine.publish('chat.line', { text: 'SECRET-FROM-ALICE' });
  await theirs.publish('chat.line', { text: 'SECRET-FROM-BOB' });
  await eventually('both lines at both', () => aliceGot.length === 2 && bobGot.length === 2);
  assert.deepEqual(aliceGot, bobGot);
  assert.deepEqual(aliceGot.map((d) => d.text), ['SECRET-FROM-ALICE', 'SECRET-FROM-BOB']);
  await eventually('bob joined, as alice hears it', () => joins.includes('bob'));
  const members = (await mine.presence()).map((c) => [c.user, c.info]).sort();
  assert.deepEqual(members, [['alice', { name: 'Alice' }], ['bob', undefined]]);
  assert.deepEqual(await mine.presenceStats(), { clients: 2, users: 2 });
  const page = await mine.history({ limit: 10 });
  assert.deepEqual(page.messages.map((m) => m.data.text), ['SECRET-FROM-ALICE', 'SECRET-FROM-BOB']);
  assert.deepEqual(await alice.rpc('chat.echo', { text: 'SECRET-RPC' }), { text: 'SECRET-RPC' });
  const refused = await alice.rpc('chat.echo', null).catch((e) => e);
  assert.deepEqual([refused.code, refused.message, refused.data], ['RPC_ERROR', 'nothing to echo', { hint: 'send some data' }]);
  await alice.send('chat.note', { text: 'SECRET-SEND' });
  assert.equal(wire.length, 1, 'one connection');
  const counts = checkWire(wire[0], { secrets: ['SECRET', 'chat.line', 'secret', 'Alice'] });
  assert.ok(counts.out >= 7 && counts.in >= 9, JSON.stringify(counts));
});

test('encrypted end to end: a reconnect sets a new key up and resumes the room; MessagePack frames are sealed too', { timeout: 60_000 }, async (t) => {
  if (!offered) return t.skip(reason);
  const { Recording, wire } = recording();
  const carol = e2eClient(edge.url, { token: token('carol'), WebSocket: Recording, encrypt, codec: msgpack });
  const writer = e2eClient(edge.url, { token: token('walt') });
  const got = [];
  carol.room('resume').on('n', (data) => got.push(data));
  await carol.room('resume').join();
  await writer.room('resume').join();
  await writer.room('resume').publish('n', 'SECRET-1');
  await eventually('the first', () => got.length === 1);
  // The edge dies; a message is published while carol is away; a new edge comes up on the port.
  edge.kill('SIGKILL');
  await eventually('carol disconnected', () => carol.state !== 'connected');
  const other = await startEdge(args());
  running.push(other);
  const away = e2eClient(other.url, { token: token('walt') }).room('resume');
  await away.join();
  await away.publish('n', 'SECRET-2');
  edge = await startEdge(args(), edge.port);
  running.push(edge);
  await eventually('resumed, the missed one delivered', () => got.length === 2, 30_000);
  await carol.room('resume').publish('n', 'SECRET-3');
  await eventually('the third', () => got.length === 3);
  assert.deepEqual(got, ['SECRET-1', 'SECRET-2', 'SECRET-3']);
  // Attempts made while no edge listened never opened: the two connections are those with frames.
  const opened = wire.filter((conn) => conn.out.length > 0);
  assert.equal(opened.length, 2);
  for (const conn of opened) checkWire(conn, { binary: true, secrets: ['SECRET', 'resume'] });
  const keys = opened.map((conn) => unpack(new Uint8Array(conn.out[0])).encrypt.key);
  assert.notEqual(keys[0], keys[1], 'a key per connection');
});

test('encrypted end to end: an edge with --require-encryption stops a plain client (4004) and serves an encrypted one', { timeout: 60_000 }, async (t) => {
  if (!offered) return t.skip(reason);
  const strict = await startEdge(['--require-encryption', '--presence-rooms', '*']);
  running.push(strict);
  const plain = e2eClient(strict.url, { token: token('pat') });
  const refused = await plain.room('x').join().catch((e) => e);
  assert.deepEqual([refused.code, refused.data], ['CLOSED', 4004]);
  assert.equal(plain.state, 'disconnected');
  const sealed = e2eClient(strict.url, { token: token('sue'), encrypt });
  await sealed.room('x').join();
  assert.deepEqual((await sealed.room('x').presence()).map((c) => c.user), ['sue']);
});
