// Real parts for the client's tests: a redis-server on a free port, edge processes built by
// cargo (or the one FERROCAST_EDGE_BIN names), the emitter CLI, and development tokens.
// Everything waits for conditions with deadlines; nothing sleeps and hopes.
import { spawn, execFile } from 'node:child_process';
import { createECDH, createHmac } from 'node:crypto';
import { createServer, connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import WebSocket from 'ws';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = (name) => path.join(root, 'target', 'debug', name);
/** The edge binary: `FERROCAST_EDGE_BIN` when set (e.g. an edge built from another branch, as
 * the encryption tests use), else the repository's. */
export const EDGE_BIN = process.env.FERROCAST_EDGE_BIN || bin('edge');
export const DEV_SECRET = 'ferrocast-dev-secret';
export const DEADLINE_MS = 15_000;

// Ports come from below Linux's ephemeral range (32768-60999): a port the kernel picked for
// listen(0) can be taken, before the edge binds it, as the local port of any outgoing
// connection. The cursor starts at an offset drawn from the process id so that test files
// running side by side rarely meet. The Rust tests use 10000-19999, and their Redis Cluster
// nodes 20000-29999 for the cluster bus: this range stays clear of both.
const PORTS = { start: 30_000, span: 2_700 };
let nextPort = (process.pid * 7919) % PORTS.span;

function canListen(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.on('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A TCP port on loopback that was free when asked and that this process hands out once. */
export async function freePort() {
  for (let tries = 0; tries < PORTS.span; tries++) {
    const port = PORTS.start + (nextPort++ % PORTS.span);
    if (await canListen(port)) return port;
  }
  throw new Error('no free port');
}

/** Waits until `check()` resolves truthy, or fails naming `what`. */
export async function eventually(what, check, ms = DEADLINE_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function listening(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** A redis-server of the test's own. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  await eventually('redis', () => listening(port));
  return { port, url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

/** This process's environment without any FERROCAST_ setting: each test configures its edge. */
function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERROCAST_')));
}

/** An edge process on free ports (or the given public port), ready. */
export async function startEdge(args = [], port) {
  port ??= await freePort();
  const internal = await freePort();
  const child = spawn(
    EDGE_BIN,
    ['--listen', `127.0.0.1:${port}`, '--internal-listen', `127.0.0.1:${internal}`, '--log', 'error', ...args],
    { stdio: ['ignore', 'ignore', 'inherit'], env: cleanEnv() },
  );
  const edge = {
    port,
    internal,
    url: `ws://127.0.0.1:${port}/ws`,
    exited: false,
    kill: (signal = 'SIGKILL') => child.kill(signal),
    metrics: async () => (await fetch(`http://127.0.0.1:${internal}/metrics`)).text(),
  };
  child.on('exit', () => (edge.exited = true));
  await eventually(`edge on ${port}`, async () => {
    if (edge.exited) throw new Error('edge exited during start-up');
    try {
      return (await fetch(`http://127.0.0.1:${internal}/readyz`)).status === 200;
    } catch {
      return false;
    }
  });
  return edge;
}

/** A value of the edge's /metrics, or 0. */
export async function metric(edge, name) {
  const line = (await edge.metrics()).split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** An HS256 token for `sub`, signed with `secret`. */
export function token(sub, claims = {}, secret = DEV_SECRET) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = { sub, exp: Math.floor(Date.now() / 1000) + 3600, rooms: ['*'], pub: ['*'], ...claims };
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(body)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** Runs the emitter CLI; resolves with its stdout. */
export function emitter(args, input) {
  return new Promise((resolve, reject) => {
    const child = execFile(bin('emitter'), args, (error, stdout, stderr) =>
      error ? reject(new Error(`emitter ${args.join(' ')}: ${stderr}`)) : resolve(stdout),
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

/** Starts `emitter send --stdin` and returns a function that feeds it a line. */
export function streamingEmitter(redisUrl) {
  const child = spawn(bin('emitter'), ['--redis-url', redisUrl, 'send', '--stdin'], {
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  return {
    send: (line) => child.stdin.write(JSON.stringify(line) + '\n'),
    end: () => new Promise((resolve) => { child.on('exit', resolve); child.stdin.end(); }),
  };
}

/** Whether the edge at `url` sets payload encryption up (protocol part E): an auth frame with a
 * public key, answered by a `welcome` with the edge's key (true), or without one or by a close
 * (false: an edge without encryption). */
export function offersEncryption(url) {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'ferrocast.v1.json');
    const timer = setTimeout(() => (ws.terminate(), reject(new Error('no answer from the edge'))), DEADLINE_MS);
    const done = (offered) => {
      clearTimeout(timer);
      ws.terminate();
      resolve(offered);
    };
    ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token: token('probe'), encrypt: { key: ecdh.getPublicKey('base64') } })));
    ws.on('message', (data) => done(Boolean(JSON.parse(String(data)).encrypt?.key)));
    ws.on('close', () => done(false));
    ws.on('error', () => done(false));
  });
}
