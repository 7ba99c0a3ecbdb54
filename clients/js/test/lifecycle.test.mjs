// The client where browsers put pages to sleep, in real Chromium through its DevTools protocol:
// offline emulation, a page whose JavaScript stopped for longer than the old watchdog allowed,
// then a page lifecycle `resume` and a `visibilitychange`, and navigation away and back through
// the back/forward cache. Then the React hooks.
//
// Headless Chromium keeps every page visible and ignores Page.setWebLifecycleState for a visible
// page (no freeze, no `freeze`/`resume` events, timers keep running): the frozen tab is made by
// pausing the page in the debugger (its timers stop, its clock does not, as in a frozen or
// intensively throttled tab), and the `resume` and `visibilitychange` events are dispatched as
// the browser would send them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startRedis, startEdge, token, eventually, emitter } from './harness.mjs';
import { site } from './support/site.mjs';
import { Ferrocast } from '../dist/esm/index.js';
import WebSocket from 'ws';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
let browser, web, redis, edge, fastEdge;
const EDGE_ARGS = ['--public-rooms', 'life*', '--presence-rooms', 'hooks:*', '--presence-events', 'hooks:*'];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}`);
  // playwright turns the back/forward cache off by default; real browsers have it on.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], ignoreDefaultArgs: ['--disable-back-forward-cache'] });
  web = await site();
  redis = await startRedis();
  // The default heartbeat (25 s): a ping the client sends within the test is a check it chose.
  edge = await startEdge(['--redis-url', redis.url, ...EDGE_ARGS]);
  // A 1 s heartbeat: the client's old watchdog gave up after 2 heartbeats + 5 s of quiet.
  fastEdge = await startEdge(['--redis-url', redis.url, '--heartbeat', '1s', ...EDGE_ARGS]);
});

after(async () => {
  await browser?.close();
  web?.server.close();
  edge?.kill();
  fastEdge?.kill();
  redis?.stop();
});

/** The lifecycle page on `room`, joined, with a long back-off: only the page's own events can
 * bring it back quickly. */
async function lifecyclePage(room, on = edge) {
  const page = await browser.newPage();
  const query = new URLSearchParams({ edge: on.url, token: token(room), room, min: 30_000, max: 60_000 });
  await page.goto(`${web.base}/lifecycle.html?${query}`);
  await page.waitForSelector('body[data-joined=yes]', { timeout: 15_000 });
  const cdp = await page.context().newCDPSession(page);
  return { page, cdp, log: () => page.evaluate(() => window.log) };
}

const tick = (room, n) => emitter(['--redis-url', redis.url, 'send', '--room', room, '--event', 'tick', '--data', String(n)]);
const state = (page) => page.evaluate(() => window.fc.state);

test('offline: the socket is closed at once; online: reconnected at once, not after the back-off', { timeout: 60_000 }, async () => {
  const { page, cdp } = await lifecyclePage('life:offline');
  await cdp.send('Network.enable');
  const network = (offline) => cdp.send('Network.emulateNetworkConditions', { offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await network(true);
  await page.waitForFunction(() => window.fc.state === 'disconnected', null, { timeout: 3_000 });
  await network(false);
  await page.waitForFunction(() => window.fc.state === 'connected', null, { timeout: 5_000 });
  await tick('life:offline', 1);
  await page.waitForFunction(() => window.log.includes('tick:1'), null, { timeout: 5_000 });
  await page.close();
});

test('a page whose timers stopped for longer than the old watchdog allowed stays connected', { timeout: 60_000 }, async () => {
  const { page, cdp, log } = await lifecyclePage('life:frozen', fastEdge);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  await new Promise((r) => setTimeout(r, 9_000));
  await cdp.send('Debugger.resume');
  await tick('life:frozen', 1);
  await page.waitForFunction(() => window.log.includes('tick:1'), null, { timeout: 5_000 });
  // Long enough for a late tick to have closed it, and for a ping of its own to be answered.
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal(await state(page), 'connected');
  assert.deepEqual((await log()).filter((l) => l.startsWith('disconnected')), [], 'the connection was never dropped');
  await page.close();
});

test('resume (page lifecycle) and visibilitychange check a connection at once with a ping', { timeout: 60_000 }, async () => {
  const { page } = await lifecyclePage('life:check');
  for (const event of ['resume', 'visibilitychange']) {
    const at = await page.evaluate((event) => {
      const at = Date.now();
      document.dispatchEvent(new Event(event));
      return at;
    }, event);
    await page
      .waitForFunction((at) => window.sent.some(([t, type]) => type === 'ping' && t >= at), at, { timeout: 1_000 })
      .catch(async () => assert.fail(`no ping after ${event}: ${JSON.stringify(await page.evaluate(() => window.sent))} ${at}`));
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await state(page), 'connected');
  await page.close();
});

test('shown again (visibilitychange) while waiting out a long back-off: reconnects at once', { timeout: 60_000 }, async () => {
  const { page } = await lifecyclePage('life:visible');
  edge.kill('SIGKILL');
  await page.waitForFunction(() => window.fc.state === 'disconnected', null, { timeout: 10_000 });
  edge = await startEdge(['--redis-url', redis.url, ...EDGE_ARGS], edge.port);
  await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await page.waitForFunction(() => window.fc.state === 'connected', null, { timeout: 5_000 });
  await page.close();
});

test('away and back through the back/forward cache: closed on pagehide, resumed on pageshow', { timeout: 60_000 }, async () => {
  const { page, log } = await lifecyclePage('life:bfcache');
  await tick('life:bfcache', 1);
  await page.waitForFunction(() => window.log.includes('tick:1'));
  await page.goto(`${web.base}/other.html`);
  await tick('life:bfcache', 2);
  // A page restored from the cache fires no load event.
  await page.goBack({ waitUntil: 'commit' });
  await page.waitForFunction(() => window.log?.includes('tick:2'), null, { timeout: 10_000 });
  const seen = await log();
  assert.ok(seen.includes('pagehide:true'), 'the page went into the cache');
  assert.ok(seen.includes('pageshow:true'), `restored from the cache, not reloaded: ${seen}`);
  assert.deepEqual(seen.filter((l) => l.startsWith('tick')), ['tick:1', 'tick:2'], 'each once');
  assert.equal(seen.filter((l) => l.startsWith('joined')).at(-1), 'joined:true', 'resumed with nothing lost');
  await page.close();
});

test('React: usePresence, useRoomState, useUserEvents, and useRoom subscribing handlers added later', { timeout: 60_000 }, async () => {
  const page = await browser.newPage();
  const query = new URLSearchParams({ edge: edge.url, token: token('alice', { rooms: ['hooks:*'], info: { name: 'Alice' } }) });
  await page.goto(`${web.base}/hooks.html?${query}`);
  const text = (id) => page.textContent(`#${id}`);
  const until = (id, expected) =>
    eventually(`#${id} = ${expected}`, async () => (await text(id)) === expected, 10_000);
  await until('state-hooks-1', 'joined');
  await until('state-secret', 'error:FORBIDDEN');
  await until('members', 'alice(Alice)');

  // Two connections of one user are two members: keyed by client id, not by user.
  const bobs = [0, 1].map(() => new Ferrocast(edge.url, { WebSocket, token: token('bob', { rooms: ['hooks:*'] }) }));
  await Promise.all(bobs.map((bob) => bob.room('hooks:1').join()));
  await until('members', 'alice(Alice),bob,bob');
  await bobs[0].room('hooks:1').leave();
  await until('members', 'alice(Alice),bob');
  bobs[1].disconnect();
  await until('members', 'alice(Alice)');
  bobs[0].disconnect();

  await emitter(['--redis-url', redis.url, 'send', '--user', 'alice', '--event', 'note', '--data', '{"text":"hi"}']);
  await until('notes', 'hi');

  await page.evaluate(() => window.listen());
  await until('ticks', 'true:');
  await tick('hooks:1', 7);
  await until('ticks', 'true:7');
  await page.close();
});
