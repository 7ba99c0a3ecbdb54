// The client in a real browser (Debian's chromium, driven by playwright-core): the example chat
// page connects, gets what the chat worker publishes, survives an edge restart with resume; the
// React page under StrictMode opens one socket and joins once; and the browser's own
// permessage-deflate offer is taken, large messages crossing the wire compressed both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from '../example/serve.mjs';
import { startRedis, startEdge, emitter, eventually, token } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const running = [];
let browser, site, redis, edge;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (scripts/test.sh does)`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  site = await serve(0);
  redis = await startRedis();
  edge = await startEdge(['--redis-url', redis.url, '--upstream-events', 'chat.*']);
  const worker = spawn(path.join(root, 'target/debug/examples/chat_worker'), {
    env: { ...process.env, FERROCAST_REDIS_URL: redis.url },
    stdio: 'ignore',
  });
  running.push(() => worker.kill('SIGKILL'));
});

after(async () => {
  await browser?.close();
  site?.close();
  running.forEach((stop) => stop());
  edge?.kill();
  redis?.stop();
});

const page = async (file, user, room) => {
  const p = await browser.newPage();
  const query = new URLSearchParams({ user, room, edge: edge.url });
  await p.goto(`http://127.0.0.1:${site.address().port}/${file}?${query}`);
  await p.waitForSelector('body[data-joined=yes]', { timeout: 15_000 });
  return p;
};
const lines = (p) => p.$$eval('#lines li', (items) => items.map((li) => li.textContent));
const publish = (room, text) =>
  emitter(['--redis-url', redis.url, 'send', '--room', room, '--event', 'chat.message', '--data', JSON.stringify({ from: 'bot', text })]);

test('the chat page talks to the worker and resumes across an edge restart', async () => {
  const p = await page('', 'alice', 'chat:1');
  assert.equal(await p.textContent('#state'), 'connected');
  // Typed in the page, sent upstream, published by the worker, shown.
  await p.fill('#text', 'hello from chromium');
  await p.click('button');
  await eventually('the worker echo', async () => (await lines(p)).includes('alice: hello from chromium'));
  await publish('chat:1', 'one');
  await eventually('one', async () => (await lines(p)).includes('bot: one'));

  // The edge dies; a message is published meanwhile; a new edge takes its port.
  edge.kill('SIGKILL');
  await p.waitForFunction(() => document.getElementById('state').textContent !== 'connected');
  await publish('chat:1', 'while down');
  edge = await startEdge(['--redis-url', redis.url, '--upstream-events', 'chat.*'], edge.port);
  await publish('chat:1', 'after');
  await eventually('resumed', async () => (await lines(p)).includes('bot: after'), 30_000);
  const shown = (await lines(p)).filter((l) => l.startsWith('bot: '));
  assert.deepEqual(shown, ['bot: one', 'bot: while down', 'bot: after'], 'each once, in order');
  await p.close();
});

test('the React page under StrictMode opens one socket and joins once', async () => {
  const p = await page('react.html', 'bob', 'chat:2');
  await p.waitForFunction(() => document.getElementById('state')?.textContent === 'connected');
  await publish('chat:2', 'react');
  await eventually('rendered', async () => (await lines(p)).includes('bot: react'));
  const sockets = await p.evaluate(() => window.__sockets);
  const sent = await p.evaluate(() => window.__sent);
  assert.equal(sockets, 1, 'one socket');
  assert.deepEqual(sent.filter((t) => t === 'join' || t === 'leave'), ['join'], `${sent}`);
  await p.close();
});

/** A TCP proxy to `port` on loopback that counts the bytes each way. */
function countingProxy(port) {
  const counted = { up: 0, down: 0 };
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    client.on('data', (chunk) => (counted.up += chunk.length));
    upstream.on('data', (chunk) => (counted.down += chunk.length));
    client.pipe(upstream).pipe(client);
    const end = () => (client.destroy(), upstream.destroy());
    client.on('error', end);
    upstream.on('error', end);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, counted })));
}

test('chromium offers permessage-deflate and large messages cross the wire compressed, both ways', async () => {
  const { server, counted } = await countingProxy(edge.port);
  const p = await browser.newPage();
  await p.goto(`http://127.0.0.1:${site.address().port}/token`);
  const text = 'compressible '.repeat(400);
  const seen = await p.evaluate(
    async ({ url, token, text }) => {
      const ws = new WebSocket(url, 'ferrocast.v1.json');
      const frames = [];
      ws.onmessage = (event) => frames.push(JSON.parse(event.data));
      const next = (type) =>
        new Promise((resolve, reject) => {
          const started = Date.now();
          const look = () => {
            const frame = frames.find((f) => f.type === type);
            if (frame) return resolve(frame);
            if (Date.now() - started > 15_000) return reject(new Error(`no ${type}: ${JSON.stringify(frames)}`));
            setTimeout(look, 10);
          };
          look();
        });
      await new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = reject)));
      ws.send(JSON.stringify({ type: 'auth', token }));
      await next('welcome');
      ws.send(JSON.stringify({ type: 'join', room: 'chat:deflate', ref: 1 }));
      await next('joined');
      ws.send(JSON.stringify({ type: 'publish', room: 'chat:deflate', event: 'big', data: { text }, ref: 2 }));
      const msg = await next('msg');
      const extensions = ws.extensions;
      ws.close();
      return { extensions, same: msg.data.text === text };
    },
    { url: `ws://127.0.0.1:${server.address().port}/ws`, token: token('carol', { rooms: ['chat:*'], pub: ['chat:*'] }), text },
  );
  await p.close();
  server.close();
  assert.match(seen.extensions, /permessage-deflate/);
  assert.ok(seen.same, 'the 5 KiB message came back whole');
  // The upgrade request (with its token) and the frames each way, all far under the text.
  assert.ok(counted.up < text.length / 2, `${counted.up} bytes from the browser`);
  assert.ok(counted.down < text.length / 4, `${counted.down} bytes from the edge`);
});
