// The client in a real browser (Debian's chromium, driven by playwright-core): the example chat
// page connects, gets what the chat worker publishes, survives an edge restart with resume; and
// the React page under StrictMode opens one socket and joins once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from '../example/serve.mjs';
import { startRedis, startEdge, emitter, eventually } from './harness.mjs';

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
