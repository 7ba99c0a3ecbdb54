// The package as a new user installs it: `npm pack` (which runs `prepare`, the build), the
// tarball installed offline into fresh throw-away projects, then a CommonJS `require` and an ESM
// `import` that talk to a real edge, TypeScript type-checks under node10, node16 and bundler
// resolution, and an esbuild browser bundle that joins a room in Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, symlinkSync, mkdirSync, rmSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { startEdge, token } from './harness.mjs';
import { coreSize, entrySize } from '../scripts/size.mjs';

const run = promisify(execFile);
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modules = path.join(here, 'node_modules');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
let work, tarball, edge;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'ferrocast-pack-'));
  const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', work], { cwd: here });
  tarball = path.join(work, stdout.trim().split('\n').pop());
  edge = await startEdge(['--public-rooms', 'pkg']);
});

after(() => {
  edge?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A fresh project with the tarball installed offline (it has no dependencies of its own);
 * React and its types, where a check needs them, come from this package's own install. */
async function project(name, packageJson = {}, links = []) {
  const dir = path.join(work, name);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, private: true, ...packageJson }));
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball], { cwd: dir });
  for (const link of links) {
    mkdirSync(path.dirname(path.join(dir, 'node_modules', link)), { recursive: true });
    symlinkSync(path.join(modules, link), path.join(dir, 'node_modules', link));
  }
  return dir;
}

const write = (dir, file, text) => writeFileSync(path.join(dir, file), text);

test('the tarball holds the built package and nothing of the tests', { timeout: 60_000 }, async () => {
  const { stdout } = await run('tar', ['-tzf', tarball]);
  const files = stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''));
  for (const f of ['dist/esm/index.js', 'dist/cjs/index.js', 'dist/cjs/package.json', 'dist/esm/react.d.ts', 'dist/cjs/msgpack.d.ts', 'dist/esm/encrypt.js', 'dist/cjs/encrypt.d.ts', 'README.md', 'docs/api.md']) {
    assert.ok(files.includes(f), `${f} packed`);
  }
  assert.deepEqual(files.filter((f) => /^(test|build|src|example|scripts)\//.test(f)), []);
  const { size } = await import('node:fs').then((fs) => fs.statSync(tarball));
  assert.ok(size < 60_000, `${size} bytes packed`);
  for (const format of ['esm', 'cjs']) {
    const react = readFileSync(path.join(here, 'dist', format, 'react.js'), 'utf8');
    assert.match(react, /^("use strict";\s*)?"use client";/, `${format} react entry is a client module`);
  }
});

const roundTrip = (load) => `
${load}
const fc = new Ferrocast(${JSON.stringify(`ws://127.0.0.1:PORT/ws`)}.replace('PORT', process.argv[2]), { token: process.argv[3], WebSocket });
const room = fc.room('pkg');
room.on('hi', (data) => { console.log(JSON.stringify({ data, codec: typeof msgpack.encode, hooks: typeof usePresence, encrypt: typeof encrypt })); fc.disconnect(); });
room.join().then(() => room.publish('hi', { ok: true })).catch((e) => { console.error(e); process.exit(1); });
`;

test('Node: CommonJS require and ESM import, each talking to an edge', { timeout: 60_000 }, async () => {
  const dir = await project('node-app', {}, ['react', 'ws']);
  write(
    dir,
    'main.cjs',
    roundTrip(`const { Ferrocast } = require('@ferrocast/client');
const { msgpack } = require('@ferrocast/client/msgpack');
const { encrypt } = require('@ferrocast/client/encrypt');
const { usePresence } = require('@ferrocast/client/react');
const WebSocket = require('ws');`),
  );
  write(
    dir,
    'main.mjs',
    roundTrip(`import { Ferrocast } from '@ferrocast/client';
import { msgpack } from '@ferrocast/client/msgpack';
import { encrypt } from '@ferrocast/client/encrypt';
import { usePresence } from '@ferrocast/client/react';
import WebSocket from 'ws';`),
  );
  for (const file of ['main.cjs', 'main.mjs']) {
    const { stdout } = await run(process.execPath, [file, String(edge.port), token('pkg', { pub: ['pkg'] })], { cwd: dir, timeout: 15_000 });
    assert.deepEqual(JSON.parse(stdout), { data: { ok: true }, codec: 'function', hooks: 'function', encrypt: 'function' }, file);
  }
});

const typed = `
import { Ferrocast, FerrocastError, type ErrorCode, type Message } from '@ferrocast/client';
import { msgpack } from '@ferrocast/client/msgpack';
import { encrypt } from '@ferrocast/client/encrypt';
import { FerrocastProvider, usePresence, useRoom, useRoomState, useUserEvents } from '@ferrocast/client/react';

const fc = new Ferrocast('wss://rt.example.com/ws', { getToken: async () => 'token', codec: msgpack, debug: true, encrypt });
type Chat = { 'chat.message': { text: string } };
const room = fc.room<Chat>('chat:1');
room.on('chat.message', (data: { text: string }, message: Message<{ text: string }>) => data.text + message.offset);
room.join({ rewind: 10 }).then((info) => info.recovered);
room.history({ limit: 5 }).then((page) => page.messages.length + (page.more ? 1 : 0));
fc.rpc<{ now: number }>('time', null, { timeout: 1000, id: 'call-1' }).then((answer) => answer.now.toFixed());
room.publish('chat.message', { text: 'hi' }, { id: 'client-chosen-1' });
// @ts-expect-error: data of the wrong shape for the event
room.publish('chat.message', { text: 1 });
const code: ErrorCode = 'RATE_LIMITED';
// @ts-expect-error: not an error code
const wrong: ErrorCode = 'NOPE';
const check = (e: unknown) => e instanceof FerrocastError && e.code === 'FORBIDDEN';
export { FerrocastProvider, usePresence, useRoom, useRoomState, useUserEvents, code, wrong, check };
`;

test('TypeScript: the types resolve under node10, node16 (CommonJS and ESM) and bundler', { timeout: 60_000 }, async () => {
  const dir = await project('ts-app', {}, ['react', '@types/react', 'csstype']);
  const tsc = path.join(modules, 'typescript', 'bin', 'tsc');
  write(dir, 'check.ts', typed);
  write(dir, 'check.mts', typed);
  write(dir, 'check.cts', typed);
  const configs = {
    node10: { module: 'commonjs', moduleResolution: 'node10', files: ['check.ts'] },
    node16: { module: 'node16', moduleResolution: 'node16', files: ['check.mts', 'check.cts'] },
    bundler: { module: 'esnext', moduleResolution: 'bundler', files: ['check.ts'] },
  };
  for (const [name, { files, ...options }] of Object.entries(configs)) {
    const config = {
      compilerOptions: { ...options, target: 'es2022', lib: ['es2022', 'dom'], strict: true, noEmit: true, skipLibCheck: true, types: [] },
      files,
    };
    write(dir, `tsconfig.${name}.json`, JSON.stringify(config));
    await run(process.execPath, [tsc, '-p', `tsconfig.${name}.json`], { cwd: dir }).catch((e) => {
      assert.fail(`${name}: ${e.stdout}${e.stderr}`);
    });
  }
});

test('an esbuild browser bundle of the installed package joins a room in Chromium; the core stays under 5 KB', { timeout: 60_000 }, async () => {
  const { code, minified, gzipped } = await coreSize();
  console.log(`core bundle (JSON build): ${minified} bytes minified, ${gzipped} bytes min+gzip`);
  assert.ok(gzipped < 5_000, `${gzipped} bytes gzipped`);
  assert.ok(!code.includes('msgpack') && !code.includes('react'), 'MessagePack and React stay out of the core');
  assert.ok(!code.includes('AES-GCM') && !code.includes('ECDH'), 'encryption stays out of the core');
  const sealed = await entrySize('encrypt');
  console.log(`encrypt entry (on top of the core): ${sealed.minified} bytes minified, ${sealed.gzipped} bytes min+gzip`);

  const dir = await project('web-app');
  write(
    dir,
    'main.js',
    `import { Ferrocast } from '@ferrocast/client';
const q = new URLSearchParams(location.search);
const fc = new Ferrocast(q.get('edge'), { token: q.get('token') });
fc.room('pkg').join().then(() => (document.title = 'joined ' + fc.clientId), (e) => (document.title = 'failed ' + e.code));`,
  );
  const { outputFiles } = await build({
    absWorkingDir: dir,
    entryPoints: ['main.js'],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    write: false,
  });
  const script = outputFiles[0].text;
  const server = createServer((req, res) => {
    const file = req.url.startsWith('/main.js') ? ['text/javascript', script] : ['text/html', '<script type="module" src="/main.js"></script>'];
    res.writeHead(200, { 'content-type': file[0] });
    res.end(file[1]);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const query = new URLSearchParams({ edge: edge.url, token: token('web') });
    await page.goto(`http://127.0.0.1:${server.address().port}/?${query}`);
    await page.waitForFunction(() => document.title.startsWith('joined') || document.title.startsWith('failed'), null, { timeout: 15_000 });
    assert.match(await page.title(), /^joined [0-9a-f-]{36}$/);
  } finally {
    await browser.close();
    server.close();
  }
});
