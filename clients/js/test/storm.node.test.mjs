// A reconnect storm with the real client: 1,000 clients with the default back-off, all on one
// edge, in one room under steady publishing. That edge is killed; every client comes back on the
// other two and resumes: each message once, in order, every resume recovered. Prints how long
// until all were back (the figure in BENCHMARKS.md).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Ferrocast } from '../dist/esm/index.js';
import { startRedis, startEdge, token, eventually, streamingEmitter } from './harness.mjs';

const CLIENTS = 1000;
const MESSAGES = 400;
const running = [];
after(() => running.forEach((p) => p.kill?.('SIGKILL') ?? p.stop?.()));

test(`${CLIENTS} clients of a killed edge come back on the others with every message once`, async () => {
  const redis = await startRedis();
  running.push(redis);
  const [a, b, c] = [
    await startEdge(['--redis-url', redis.url]),
    await startEdge(['--redis-url', redis.url]),
    await startEdge(['--redis-url', redis.url]),
  ];
  running.push(a, b, c);
  let killedAt = null;
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    // The first connection goes to the edge that will die, later ones to the others in turn,
    // as a load balancer that stopped routing to the dead pod would send them.
    let connected = false;
    let tries = 0;
    const fc = new Ferrocast(() => (connected ? [b.url, c.url][tries++ % 2] : a.url), {
      WebSocket,
      token: token(`storm-${i}`, { rooms: ['storm'] }),
    });
    fc.on('connected', () => (connected = true));
    running.push({ kill: () => fc.disconnect() });
    const seen = { got: [], joins: [], backAfter: null };
    const room = fc.room('storm');
    room.on('tick', (data) => seen.got.push(data.n));
    room.on('$joined', (info) => {
      seen.joins.push(info);
      if (killedAt !== null && seen.backAfter === null) seen.backAfter = Date.now() - killedAt;
    });
    clients.push({ fc, room, seen });
  }
  await Promise.all(clients.map(({ room }) => room.join()));

  const publisher = streamingEmitter(redis.url);
  for (let n = 0; n < MESSAGES; n++) {
    publisher.send({ room: 'storm', event: 'tick', data: { n } });
    if (n === 100) {
      await eventually('some delivered everywhere', () => clients.every(({ seen }) => seen.got.length > 20));
      killedAt = Date.now();
      a.kill('SIGKILL');
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await publisher.end();
  await eventually(
    'every client back with every message',
    () => clients.every(({ seen }) => seen.got.length >= MESSAGES),
    60_000,
  );
  const back = clients.map(({ seen }) => seen.backAfter).sort((x, y) => x - y);
  const at = (q) => back[Math.min(back.length - 1, Math.ceil(back.length * q) - 1)];
  console.log(
    `storm with @ferrocast/client: ${CLIENTS} clients back after p50 ${at(0.5)} ms, ` +
      `p99 ${at(0.99)} ms, max ${back[back.length - 1]} ms`,
  );
  const expected = [...Array(MESSAGES).keys()];
  for (const { seen } of clients) {
    assert.deepEqual(seen.got, expected, 'each once, in order');
    assert.equal(seen.joins.length, 2, 'joined, then rejoined on another edge');
    assert.equal(seen.joins[1].recovered, true, 'nothing could be lost');
  }
});
