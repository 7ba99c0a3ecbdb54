// The client in Node against real edges and a real Redis: resume across an edge killed
// mid-stream, token refresh, 4001, retry_after, presence.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Ferrocast, FerrocastError } from '../dist/esm/index.js';
import { startRedis, startEdge, token, eventually, streamingEmitter, emitter, metric } from './harness.mjs';

const running = [];
after(() => running.forEach((p) => p.kill?.('SIGKILL') ?? p.stop?.()));

function client(url, options = {}) {
  const fc = new Ferrocast(url, { WebSocket, backoff: { min: 50, max: 500 }, ...options });
  running.push({ kill: () => fc.disconnect() });
  return fc;
}

test('every message once, in order, across an edge killed mid-stream', async () => {
  const redis = await startRedis();
  running.push(redis);
  const a = await startEdge(['--redis-url', redis.url]);
  const b = await startEdge(['--redis-url', redis.url]);
  running.push(a, b);
  // The url function rotates edges, as a caller behind no load balancer would.
  const urls = [a.url, b.url];
  let next = 0;
  const fc = client(() => urls[next++ % 2], { token: token('ada') });
  const room = fc.room('feed');
  const got = [];
  const joins = [];
  room.on('tick', (data) => got.push(data.n));
  room.on('$joined', (info) => joins.push(info));
  await room.join();

  const publisher = streamingEmitter(redis.url);
  for (let n = 0; n < 300; n++) {
    publisher.send({ room: 'feed', event: 'tick', data: { n } });
    if (n === 100) {
      await eventually('some delivered', () => got.length > 20);
      a.kill('SIGKILL');
    }
    if (n % 20 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  await publisher.end();
  await eventually('all 300 delivered', () => got.length >= 300);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(got, [...Array(300).keys()], 'each once, in order');
  assert.equal(joins.length, 2, 'joined, then rejoined on the other edge');
  assert.equal(joins[1].recovered, true, 'nothing could be lost');
  assert.equal(fc.state, 'connected');
});

test('a short-lived token is refreshed without a disconnect', async () => {
  const edge = await startEdge(['--jwt-leeway', '1s']);
  running.push(edge);
  let issued = 0;
  const disconnects = [];
  const fc = client(edge.url, {
    getToken: () => {
      issued++;
      return token('bo', { exp: Math.floor(Date.now() / 1000) + 3 });
    },
    refreshLead: 2,
  });
  fc.on('disconnected', (d) => disconnects.push(d));
  await fc.room('r').join();
  // Without a refresh the edge closes it (4003) one second after the 3 s token expires.
  await new Promise((r) => setTimeout(r, 6_000));
  assert.ok(issued >= 3, `refreshed ${issued - 1} times`);
  assert.deepEqual(disconnects, []);
  assert.equal(fc.state, 'connected');
  const { clients } = await fc.room('r').presenceStats().catch((e) => ({ clients: e.code }));
  assert.equal(clients, 'FORBIDDEN', 'presence is off here: a typed error');
});

test('4001 stops retrying and reports unauthorized', async () => {
  const edge = await startEdge();
  running.push(edge);
  let asked = 0;
  const fc = client(edge.url, { getToken: () => (asked++, 'not-a-token') });
  const unauthorized = new Promise((resolve) => fc.on('unauthorized', resolve));
  fc.connect();
  assert.match(await unauthorized, /invalid token/);
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(asked, 1, 'no retry with a token that failed');
  assert.equal(fc.state, 'disconnected');
  assert.equal(await metric(edge, 'ferrocast_connections_opened_total'), 1, 'one attempt, no retry loop');
});

test('a refused request waits exactly its retry_after, then succeeds', async () => {
  const edge = await startEdge(['--event-rate', 'chat.*=1/1s,1', '--presence-rooms', 'r']);
  running.push(edge);
  const fc = client(edge.url, { token: token('cy', { info: { name: 'Cy' } }) });
  const room = fc.room('r');
  await room.join();
  await room.publish('chat.say', { n: 1 });
  const started = Date.now();
  await room.publish('chat.say', { n: 2 });
  assert.ok(Date.now() - started >= 700, 'waited for the bucket');
  const error = await room.publish('chat.say', { n: 3 }, {}).then(
    () => null,
    (e) => e,
  );
  // With retries (3 by default) the third one succeeds too; without, it is a typed error.
  assert.equal(error, null);
  const impatient = client(edge.url, { token: token('dee'), retries: 0 });
  await impatient.room('r').join();
  await impatient.room('r').publish('chat.say', 1);
  const refused = await impatient.room('r').publish('chat.say', 2).catch((e) => e);
  assert.ok(refused instanceof FerrocastError);
  assert.equal(refused.code, 'RATE_LIMITED');
  assert.ok(refused.retryAfter > 0 && refused.retryAfter <= 1000, `${refused.retryAfter}`);
  // Presence through the client.
  const present = await room.presence();
  assert.deepEqual(present.map((c) => c.user).sort(), ['cy', 'dee']);
  assert.deepEqual(present.find((c) => c.user === 'cy').info, { name: 'Cy' });
});

test('user and all scopes resume from their last offsets after a reconnect', async () => {
  const redis = await startRedis();
  running.push(redis);
  const edge = await startEdge(['--redis-url', redis.url]);
  running.push(edge);
  const fc = client(edge.url, { token: token('eve') });
  const seen = [];
  fc.on('user', (event, data) => seen.push(data));
  fc.connect();
  await eventually('connected', () => fc.state === 'connected');
  await emitter(['--redis-url', redis.url, 'send', '--user', 'eve', '--event', 'note', '--data', '1']);
  await eventually('first note', () => seen.length === 1);
  // Published while the client is away: recovered on reconnect, nothing twice.
  edge.kill('SIGKILL');
  await eventually('disconnected', () => fc.state !== 'connected');
  await emitter(['--redis-url', redis.url, 'send', '--user', 'eve', '--event', 'note', '--data', '2']);
  const again = await startEdge(['--redis-url', redis.url], edge.port);
  running.push(again);
  await eventually('second note', () => seen.length >= 2);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(seen, [1, 2]);
});

test('permessage-deflate: large messages both ways, compressed once per edge', async () => {
  const edge = await startEdge(['--public-rooms', 'z']);
  running.push(edge);
  // `ws` offers permessage-deflate by default and compresses what it sends above 1 KiB.
  const raw = new WebSocket(edge.url, 'ferrocast.v1.json', { perMessageDeflate: { threshold: 0 } });
  await new Promise((resolve, reject) => {
    raw.once('open', resolve);
    raw.once('error', reject);
  });
  assert.match(raw.extensions, /permessage-deflate/);
  const frames = [];
  raw.on('message', (data) => frames.push(JSON.parse(data.toString())));
  const next = (type) => eventually(type, () => frames.find((f) => f.type === type));
  raw.send(JSON.stringify({ type: 'auth', token: token('zed', { pub: ['z'] }) }));
  await next('welcome');
  raw.send(JSON.stringify({ type: 'join', room: 'z', ref: 1 }));
  await next('joined');
  const text = 'compressible '.repeat(400);
  raw.send(JSON.stringify({ type: 'publish', room: 'z', event: 'big', data: { text }, ref: 2 }));
  const msg = await next('msg');
  assert.equal(msg.data.text, text, 'a 5 KiB message in, compressed, and back out');
  // Everything the edge sent (welcome, joined, ack, the message) took far less than the text.
  assert.ok(raw._socket.bytesRead < text.length / 4, `${raw._socket.bytesRead} bytes read`);
  raw.close();
});
