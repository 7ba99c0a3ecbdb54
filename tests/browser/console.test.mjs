// The console (/console/ on the edge's internal listener) in real Chromium: it refuses a browser
// without the API key, and with it shows two live edges of one deployment, publishes to a room
// and tails it. Screenshots go to target/test-artifacts/ for a person to look at.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const artifacts = path.join(root, 'target', 'test-artifacts');
const KEY = 'console-test-api-key-0123456789';
const SECRET = 'console-test-jwt-secret-0123456789-0123456789';
const DEADLINE_MS = 20_000;
const children = [];

after(() => children.forEach((child) => child.kill('SIGKILL')));

// Ports below Linux's ephemeral range and apart from the other suites' (Rust 10000-29999,
// clients/js 30000-32699).
let nextPort = 32_700 + ((process.pid * 31) % 60);
async function freePort() {
  for (;;) {
    const port = nextPort++;
    const free = await new Promise((resolve) => {
      const server = createServer();
      server.on('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

async function eventually(what, check) {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function listening(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => { socket.destroy(); resolve(true); });
    socket.on('error', () => resolve(false));
  });
}

function run(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function startRedis() {
  const port = await freePort();
  run('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no']);
  await eventually('redis-server', () => listening(port));
  return `redis://127.0.0.1:${port}`;
}

async function startEdge(redisUrl, node) {
  const [publicPort, internalPort] = [await freePort(), await freePort()];
  run(path.join(root, 'target', 'debug', 'edge'), [
    '--listen', `127.0.0.1:${publicPort}`, '--internal-listen', `127.0.0.1:${internalPort}`,
    '--redis-url', redisUrl, '--node-id', node, '--jwt-secret', SECRET, '--api-key', KEY,
    '--log', 'error',
  ]);
  const url = `http://127.0.0.1:${internalPort}`;
  await eventually(`edge ${node}`, async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok);
  return url;
}

test('the console shows the live edges, publishes and tails, only with a key', async () => {
  mkdirSync(artifacts, { recursive: true });
  const redis = await startRedis();
  const console1 = await startEdge(redis, 'edge-one');
  await startEdge(redis, 'edge-two');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    // Without the key: 401 with a Basic challenge, which a headless browser cannot answer.
    const stranger = await browser.newPage();
    const refused = await stranger.request.get(`${console1}/console/`);
    assert.equal(refused.status(), 401);
    assert.match(refused.headers()['www-authenticate'], /^Basic /);
    assert.doesNotMatch(await refused.text(), /<script/);
    await assert.rejects(stranger.goto(`${console1}/console/`), /INVALID_AUTH_CREDENTIALS/);
    await stranger.screenshot({ path: path.join(artifacts, 'console-refused.png') });
    const wrong = await browser.newContext({ httpCredentials: { username: 'ops', password: 'nope' } });
    // A wrong key: refused again after the browser offered it.
    const wrongAnswer = await (await wrong.newPage()).goto(`${console1}/console/`).catch((e) => e);
    assert.ok(
      wrongAnswer instanceof Error ? /INVALID_AUTH_CREDENTIALS/.test(wrongAnswer.message) : wrongAnswer.status() === 401,
      String(wrongAnswer),
    );

    // With it: both edges, each reporting itself.
    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: KEY } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const loaded = await page.goto(`${console1}/console/`);
    assert.equal(loaded.status(), 200);
    assert.match(loaded.headers()['content-security-policy'], /frame-ancestors 'none'/);
    await page.locator('#edges tbody tr[data-node="edge-one"]').waitFor({ timeout: DEADLINE_MS });
    await page.locator('#edges tbody tr[data-node="edge-two"]').waitFor({ timeout: DEADLINE_MS });
    assert.equal(await page.locator('#edges tbody tr').count(), 2);
    await page.screenshot({ path: path.join(artifacts, 'console-edges.png'), fullPage: true });

    // Publish to a room from the form; the tail shows it arrive.
    await page.getByLabel('Room', { exact: true }).fill('console:demo');
    await page.getByRole('button', { name: 'Inspect and tail' }).click();
    await page.getByLabel('Data (JSON)').fill('{"text":"hello from the console"}');
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.locator('#published', { hasText: 'Published at' }).waitFor({ timeout: DEADLINE_MS });
    await page.locator('#tail li', { hasText: 'hello from the console' }).waitFor({ timeout: DEADLINE_MS });
    // Not JSON: said, not sent.
    await page.getByLabel('Data (JSON)').fill('{oops');
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.locator('#published', { hasText: 'not JSON' }).waitFor({ timeout: DEADLINE_MS });
    await page.screenshot({ path: path.join(artifacts, 'console-tail.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
