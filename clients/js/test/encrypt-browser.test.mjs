// Payload encryption in real Chromium (WebCrypto in the browser, through playwright-core): the
// encrypt entry joins a room with a plain Node member, publishes, receives, reads presence and
// history and calls the chat worker, and every frame on the page's WebSocket after `welcome` is
// an `enc` frame with its counter, no payload readable. Skipped, saying why, when the edge in use
// (FERROCAST_EDGE_BIN, or the repository's) does not offer encryption.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { Ferrocast } from '../dist/esm/index.js';
import { startRedis, startEdge, token, eventually, offersEncryption, EDGE_BIN } from './harness.mjs';
import { site } from './support/site.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const stops = [];
let browser, web, edge, offered;

before(async () => {
  const redis = await startRedis();
  stops.push(() => redis.stop());
  edge = await startEdge(['--redis-url', redis.url, '--upstream-events', 'chat.*', '--presence-rooms', '*']);
  stops.push(() => edge.kill());
  offered = await offersEncryption(edge.url);
  if (!offered) return console.log(`# skipping the Chromium encryption test: the edge ${EDGE_BIN} does not offer encryption`);
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  web = await site();
  const worker = spawn(path.join(root, 'target/debug/examples/chat_worker'), {
    env: { ...process.env, FERROCAST_REDIS_URL: redis.url },
    stdio: 'ignore',
  });
  stops.push(() => worker.kill('SIGKILL'));
});

after(async () => {
  await browser?.close();
  web?.server.close();
  stops.forEach((stop) => stop());
});

test('Chromium: an encrypted client joins, publishes, receives, reads presence and history, calls a worker; the wire carries only sealed frames', { timeout: 60_000 }, async (t) => {
  if (!offered) return t.skip(`the edge ${EDGE_BIN} does not offer encryption (set FERROCAST_EDGE_BIN to an edge with protocol part E)`);
  const page = await browser.newPage();
  const query = new URLSearchParams({ edge: edge.url, token: token('cleo'), room: 'vault' });
  await page.goto(`${web.base}/encrypt.html?${query}`);
  await page.waitForFunction(() => document.body.dataset.joined, null, { timeout: 15_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.joined), 'yes');

  const plain = new Ferrocast(edge.url, { WebSocket, token: token('nick') });
  t.after(() => plain.disconnect());
  const heard = [];
  plain.room('vault').on('line', (data) => heard.push(data.text));
  await plain.room('vault').join();
  await page.evaluate(() => window.room.publish('line', { text: 'SECRET-FROM-CHROMIUM' }));
  await plain.room('vault').publish('line', { text: 'SECRET-FROM-NODE' });
  await page.waitForFunction(() => window.got.length === 2, null, { timeout: 15_000 });
  assert.deepEqual(await page.evaluate(() => window.got), ['SECRET-FROM-CHROMIUM', 'SECRET-FROM-NODE']);
  await eventually('the plain member got both', () => heard.length === 2);

  const seen = await page.evaluate(async () => ({
    presence: (await window.room.presence()).map((c) => c.user).sort(),
    history: (await window.room.history()).messages.map((m) => m.data.text),
    echo: await window.fc.rpc('chat.echo', { text: 'SECRET-RPC' }),
    time: typeof (await window.fc.rpc('chat.time', null)).now,
  }));
  assert.deepEqual(seen, {
    presence: ['cleo', 'nick'],
    history: ['SECRET-FROM-CHROMIUM', 'SECRET-FROM-NODE'],
    echo: { text: 'SECRET-RPC' },
    time: 'number',
  });

  const wire = await page.evaluate(() => window.wire);
  const out = wire.out.map((f) => JSON.parse(f));
  const inn = wire.in.map((f) => JSON.parse(f));
  assert.equal(out[0].type, 'auth');
  assert.equal(atob(out[0].encrypt.key).length, 65);
  assert.ok(inn[0].type === 'welcome' && inn[0].encrypt.key && inn[0].encrypt.salt);
  out.slice(1).forEach((f, i) => assert.deepEqual([f.type, f.n], ['enc', i]));
  inn.slice(1).forEach((f, i) => assert.deepEqual([f.type, f.n], ['enc', i]));
  assert.ok(out.length >= 6 && inn.length >= 8, `${out.length} frames out, ${inn.length} in`);
  const all = [...wire.out, ...wire.in].join('\n');
  for (const secret of ['SECRET', 'vault', 'chat.echo']) assert.ok(!all.includes(secret), `${secret} on the wire`);
  await page.close();
});
