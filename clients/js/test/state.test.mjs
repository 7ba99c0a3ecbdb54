// The client's state machine against a fake socket: the races of joins and leaves with the
// connection (property-based), tokens across reconnects and refreshes, what pending requests
// hear when the edge stops the client, and liveness judged by wall-clock time and traffic.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ferrocast, FerrocastError } from '../dist/esm/index.js';
import { FakeSocket, settle, welcome, jwt } from './support/fake-socket.mjs';

const clients = [];
const stopAll = () => clients.splice(0).forEach((c) => c.disconnect());
beforeEach(() => (FakeSocket.all = []));
afterEach(stopAll);

function client(options = {}) {
  const made = new Ferrocast('ws://edge/ws', {
    WebSocket: FakeSocket,
    token: 't',
    backoff: { min: 0, max: 0 },
    lifecycle: false,
    ...options,
  });
  clients.push(made);
  return made;
}

/** Connects `client` (if it is not on its way), opens the newest socket and welcomes it. */
async function connect(client, extra) {
  client.connect();
  await settle();
  const ws = FakeSocket.last;
  ws.open();
  assert.equal(ws.next().type, 'auth');
  ws.receive(welcome(extra));
  await settle();
  return ws;
}

/** Answers every frame the client sent on `ws` as an edge would, tracking membership. */
function answerAll(ws, members) {
  for (let f; (f = ws.next()); ) answer(ws, f, members);
}

function answer(ws, f, members) {
  if (f.type === 'auth') return ws.receive(welcome());
  if (f.type === 'join') {
    members.add(f.room);
    return ws.receive({ type: 'joined', room: f.room, ref: f.ref, offset: null, recovered: false });
  }
  if (f.type === 'leave') {
    members.delete(f.room);
    return ws.receive({ type: 'left', room: f.room, ref: f.ref });
  }
  if (f.type === 'ping') return ws.receive({ type: 'pong' });
}

test('joins and leaves in any order with the connection end where the application wanted, with no ghost', { timeout: 30_000 }, async () => {
  const step = fc.constantFrom('join', 'leave', 'open', 'deliver', 'drop', 'tick');
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 30 }), async (steps) => {
      FakeSocket.all = [];
      const fcl = client();
      const room = fcl.room('r');
      // Membership per socket, as the edge knows it; a dropped socket's is gone.
      const members = new Map();
      const membersOf = (ws) => (members.has(ws) || members.set(ws, new Set()), members.get(ws));
      let wanted = false;
      const joins = [];
      const leaves = [];
      const events = [];
      room.on('$joined', () => events.push('joined'));
      room.on('$left', (e) => events.push(`left:${e.by}`));
      fcl.connect();
      for (const s of steps) {
        const ws = FakeSocket.last;
        if (s === 'join') {
          wanted = true;
          const p = { settled: false };
          joins.push(p);
          room.join().then(
            () => (p.settled = 'ok'),
            (e) => (p.settled = e.code),
          );
        } else if (s === 'leave') {
          wanted = false;
          const p = { settled: false };
          leaves.push(p);
          room.leave().then(() => (p.settled = true));
        } else if (s === 'open' && ws?.readyState === 0) ws.open();
        else if (s === 'deliver' && ws?.readyState === 1) {
          const f = ws.next();
          if (f) answer(ws, f, membersOf(ws));
        } else if (s === 'drop' && ws && ws.readyState < 2) ws.drop(1006);
        await settle(1);
      }
      // Then the network behaves: everything is answered until nothing moves.
      for (let round = 0, quiet = 0; round < 40 && quiet < 3; round++) {
        await settle(1);
        const ws = FakeSocket.last;
        const before = ws.sent.length;
        if (ws.readyState === 0) ws.open();
        if (ws.readyState === 1) answerAll(ws, membersOf(ws));
        quiet = ws === FakeSocket.last && ws.readyState === 1 && ws.sent.length === before ? quiet + 1 : 0;
      }
      const ws = FakeSocket.last;
      assert.equal(fcl.state, 'connected');
      assert.equal(membersOf(ws).has('r'), wanted, 'the edge has the client in the room iff it is wanted');
      assert.equal(room.joined, wanted);
      assert.equal(room.state, wanted ? 'joined' : 'left');
      for (const socket of FakeSocket.all) {
        const moves = socket.sent.filter((f) => f.type === 'join' || f.type === 'leave').map((f) => f.type);
        moves.forEach((m, i) => assert.equal(m, i % 2 ? 'leave' : 'join', `alternating: ${moves}`));
      }
      assert.ok(joins.every((p) => p.settled), 'every join settled');
      if (wanted) assert.equal(joins.at(-1).settled, 'ok');
      for (const p of joins) assert.ok(p.settled === 'ok' || p.settled === 'LEFT', p.settled);
      assert.ok(leaves.every((p) => p.settled), 'every leave settled');
      // $left only ever follows a $joined (which a reconnect's rejoin repeats).
      events.forEach((e, i) => e.startsWith('left') && assert.equal(events[i - 1], 'joined', `${events}`));
      fcl.disconnect();
    }).afterEach(stopAll),
    { numRuns: 200 },
  );
});

test('a leave before the socket opens: the join is never sent', { timeout: 30_000 }, async () => {
  const fcl = client();
  const room = fcl.room('r');
  const joined = room.join().catch((e) => e);
  await room.leave();
  const ws = await connect(fcl);
  answerAll(ws, new Set());
  await settle();
  assert.deepEqual(ws.sentOfType('join'), []);
  assert.equal((await joined).code, 'LEFT');
  assert.equal(room.joined, false);
  fcl.disconnect();
});

test('a leave before the join is answered: the answer is followed by a leave', { timeout: 30_000 }, async () => {
  const fcl = client();
  const room = fcl.room('r');
  const ws = await connect(fcl);
  const joined = room.join().catch((e) => e);
  await settle();
  const join = ws.next();
  assert.equal(join.type, 'join');
  const left = room.leave();
  ws.receive({ type: 'joined', room: 'r', ref: join.ref, offset: null, recovered: false });
  await settle();
  const leave = ws.next();
  assert.deepEqual([leave.type, leave.room], ['leave', 'r'], 'the ghost is left');
  ws.receive({ type: 'left', room: 'r', ref: leave.ref });
  await left;
  assert.equal((await joined).code, 'LEFT');
  assert.equal(room.joined, false);
  fcl.disconnect();
});

test("$left fires for the application's own leave", { timeout: 30_000 }, async () => {
  const fcl = client();
  const room = fcl.room('r');
  const ws = await connect(fcl);
  const seen = [];
  room.on('$left', (e) => seen.push(e.by));
  const members = new Set();
  const joined = room.join();
  await settle();
  answerAll(ws, members);
  await joined;
  const left = room.leave();
  await settle();
  answerAll(ws, members);
  await left;
  assert.deepEqual(seen, ['client']);
  fcl.disconnect();
});

test('a room a worker joined is rejoined from its offset after a reconnect, or reported lost', { timeout: 30_000 }, async () => {
  const fcl = client();
  const serverJoined = [];
  const lost = [];
  fcl.on('joined', (room) => serverJoined.push(room.name));
  fcl.on('left', (room) => lost.push(room.name));
  const errors = [];
  fcl.on('error', (e) => errors.push(e.code));
  let ws = await connect(fcl);
  for (const name of ['kept', 'gone']) {
    ws.receive({ type: 'joined', room: name, offset: `${name}-1`, recovered: false, by: 'server' });
  }
  ws.receive({ type: 'msg', scope: 'room', room: 'kept', event: 'e', data: 1, offset: 'kept-2', id: 'm1', ts: 0 });
  assert.deepEqual(serverJoined, ['kept', 'gone']);
  const gone = [];
  fcl.room('gone').on('$left', (e) => gone.push(e));
  ws.drop(1006);
  ws = await connect(fcl);
  await settle();
  const joins = ws.sentOfType('join');
  assert.deepEqual(
    joins.map((f) => [f.room, f.since]),
    [['kept', 'kept-2'], ['gone', 'gone-1']],
  );
  const [kept, refused] = [ws.next(), ws.next()];
  ws.receive({ type: 'joined', room: 'kept', ref: kept.ref, offset: 'kept-2', recovered: true });
  ws.receive({ type: 'error', ref: refused.ref, code: 'FORBIDDEN', message: 'not allowed' });
  await settle();
  assert.equal(fcl.room('kept').joined, true);
  assert.equal(fcl.room('gone').state, 'error');
  assert.equal(gone.length, 1);
  assert.equal(gone[0].by, 'lost');
  assert.equal(gone[0].error.code, 'FORBIDDEN');
  assert.deepEqual(lost, ['gone'], 'the client tells it lost the room');
  assert.deepEqual(errors, ['FORBIDDEN']);
  fcl.disconnect();
});

test('getToken: one call across many reconnects while the token is good; a new one near exp', { timeout: 30_000 }, async () => {
  let calls = 0;
  let exp = Math.floor(Date.now() / 1000) + 3600;
  const fcl = client({ getToken: () => (calls++, jwt(exp)), refreshLead: 60 });
  fcl.connect();
  for (let i = 0; i < 5; i++) {
    const ws = await connect(fcl);
    ws.drop(1006);
  }
  assert.equal(calls, 1, 'a drained edge does not send everyone to the token endpoint');
  // A token within refreshLead of its exp is not reused.
  exp = Math.floor(Date.now() / 1000) + 3600;
  fcl.disconnect();
  const near = client({ getToken: () => (calls++, jwt(Math.floor(Date.now() / 1000) + 30)), refreshLead: 60 });
  calls = 0;
  near.connect();
  (await connect(near)).drop(1006);
  (await connect(near)).drop(1006);
  await connect(near);
  assert.equal(calls, 3);
  // An expired token (4003) is never reused.
  calls = 0;
  FakeSocket.last.drop(4003, 'token expired');
  await connect(near);
  assert.equal(calls, 1);
  near.disconnect();
});

test('a failing getToken is retried with back-off, and reported', { timeout: 30_000 }, async () => {
  let calls = 0;
  const fcl = client({
    backoff: { min: 20, max: 40 },
    getToken: () => {
      calls++;
      if (calls < 3) throw new Error('token endpoint down');
      return jwt(Math.floor(Date.now() / 1000) + 3600);
    },
  });
  const errors = [];
  const retries = [];
  fcl.on('error', (e) => errors.push(e.code));
  fcl.on('disconnected', (d) => retries.push(d.retryIn));
  const started = Date.now();
  fcl.connect();
  while (FakeSocket.all.length === 0) await new Promise((r) => setTimeout(r, 5));
  assert.equal(calls, 3);
  assert.deepEqual(errors, ['TOKEN_FAILED', 'TOKEN_FAILED']);
  assert.ok(retries.every((ms) => ms >= 20), `${retries}`);
  assert.ok(Date.now() - started >= 40, 'waited between attempts');
  fcl.disconnect();
});

test('a refresh under way when the connection drops serves the reconnect: one getToken call, no stale refresh', { timeout: 30_000 }, async () => {
  let calls = 0;
  let release;
  const fcl = client({
    refreshLead: 3600,
    getToken: () => {
      calls++;
      if (calls === 1) return jwt(Math.floor(Date.now() / 1000) + 60, 'u');
      return new Promise((resolve) => (release = () => resolve(jwt(Math.floor(Date.now() / 1000) + 7200, 'u'))));
    },
  });
  fcl.connect();
  const first = await connect(fcl);
  // The refresh is due at once (the token is within refreshLead): its timer waits 1 s.
  const deadline = Date.now() + 5_000;
  while (calls < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 2, 'refresh asked for a token');
  first.drop(1006);
  await settle();
  release();
  const second = await connect(fcl);
  assert.equal(calls, 2, 'the reconnect took the refresh token');
  const exp = JSON.parse(Buffer.from(second.sent[0].token.split('.')[1], 'base64url')).exp;
  assert.ok(exp > Date.now() / 1000 + 3600, 'it authenticated with the new token');
  await settle();
  assert.deepEqual([...first.sentOfType('refresh'), ...second.sentOfType('refresh')], [], 'no refresh for a token the connection already has');
  fcl.disconnect();
});

test('4001: requests waiting for the connection reject at once with UNAUTHORIZED', { timeout: 30_000 }, async () => {
  const fcl = client();
  fcl.connect();
  const pending = [fcl.room('a').publish('e', 1), fcl.rpc('call', 1), fcl.send('e', 2), fcl.room('b').join()];
  await settle();
  const started = Date.now();
  FakeSocket.last.open();
  FakeSocket.last.drop(4001, 'invalid token');
  const errors = await Promise.all(pending.map((p) => p.catch((e) => e)));
  assert.ok(Date.now() - started < 1_000, 'not after the request timeout');
  for (const e of errors) {
    assert.ok(e instanceof FerrocastError);
    assert.deepEqual([e.code, e.message, e.data], ['UNAUTHORIZED', 'invalid token', 4001]);
  }
  assert.equal(fcl.state, 'disconnected');
  assert.equal(FakeSocket.all.length, 1, 'no retry with the same token');
});

test('4010: requests sent and not answered reject at once with CLOSED and the reason', { timeout: 30_000 }, async () => {
  const fcl = client();
  const ws = await connect(fcl);
  const pending = [fcl.room('a').publish('e', 1), fcl.rpc('call', 1), fcl.send('e', 2), fcl.room('b').join()];
  await settle();
  assert.equal(ws.sent.length, 5);
  const started = Date.now();
  ws.drop(4010, 'banned');
  const errors = await Promise.all(pending.map((p) => p.catch((e) => e)));
  assert.ok(Date.now() - started < 1_000, 'not after the request timeout');
  for (const e of errors) assert.deepEqual([e.code, e.message, e.data], ['CLOSED', 'banned', 4010]);
  await settle();
  assert.equal(FakeSocket.all.length, 1, 'not reconnected');
});

test('pending requests wait for a reconnect after other closes; a publish and a call go again with the same id', { timeout: 30_000 }, async () => {
  const fcl = client();
  let ws = await connect(fcl);
  const published = fcl.room('r').publish('e', { n: 1 });
  const called = fcl.rpc('call', 1);
  await settle();
  const first = ws.sentOfType('publish')[0];
  assert.match(first.id, /^[A-Za-z0-9_-]{21}$/);
  const call = ws.sentOfType('rpc')[0];
  assert.match(call.id, /^[A-Za-z0-9_-]{21}$/);
  assert.notEqual(call.id, first.id);
  ws.drop(1006);
  ws = await connect(fcl);
  const again = ws.sentOfType('publish')[0];
  assert.equal(again.id, first.id, 'a retry cannot store it twice');
  ws.receive({ type: 'ack', ref: again.ref, offset: 'o1' });
  assert.deepEqual(await published, { offset: 'o1' });
  const recall = ws.sentOfType('rpc')[0];
  assert.equal(recall.id, call.id, 'the workers are called once');
  assert.deepEqual([recall.event, recall.data], ['call', 1]);
  assert.ok(recall.timeout <= call.timeout, 'the retry waits only for what is left of the call\'s timeout');
  ws.receive({ type: 'reply', ref: recall.ref, data: { ok: true } });
  assert.deepEqual(await called, { ok: true });
  fcl.disconnect();
});

test('rpc: the caller\'s id and timeout on the frame, a retry after each drop, then DISCONNECTED after `retries`', { timeout: 30_000 }, async () => {
  const fcl = client({ retries: 2 });
  let ws = await connect(fcl);
  const called = fcl.rpc('call', null, { id: 'my-call-1', timeout: 20_000 }).catch((e) => e);
  await settle();
  const [call] = ws.sentOfType('rpc');
  assert.deepEqual([call.id, call.event, call.data], ['my-call-1', 'call', null]);
  assert.ok(call.timeout > 19_000 && call.timeout <= 20_000, `timeout ${call.timeout}`);
  const sent = [call];
  for (let drop = 0; drop < 2; drop++) {
    ws.drop(1006);
    ws = await connect(fcl);
    sent.push(...ws.sentOfType('rpc'));
  }
  assert.deepEqual(sent.map((f) => f.id), ['my-call-1', 'my-call-1', 'my-call-1']);
  ws.drop(1006);
  const error = await called;
  assert.equal(error.code, 'DISCONNECTED', 'given up after two retries');
  fcl.disconnect();
});

test('rpc: a call whose timeout passes while the client reconnects rejects with TIMEOUT and is not sent again', { timeout: 30_000 }, async () => {
  const fcl = client();
  const ws = await connect(fcl);
  const started = Date.now();
  const called = fcl.rpc('call', 1, { timeout: 100 }).catch((e) => e);
  await settle();
  assert.equal(ws.sentOfType('rpc').length, 1);
  ws.drop(1006);
  await settle();
  // The new socket never opens.
  const error = await called;
  assert.equal(error.code, 'TIMEOUT');
  assert.ok(Date.now() - started < 5_000, 'at the call\'s deadline (and the 2 s grace), not later');
  assert.equal(FakeSocket.last.sent.length, 0);
  fcl.disconnect();
});

test('rpc: a call refused by the edge (RPC_ERROR, TIMEOUT) is not sent again', { timeout: 30_000 }, async () => {
  const fcl = client();
  const ws = await connect(fcl);
  const refused = fcl.rpc('call', null).catch((e) => e);
  const late = fcl.rpc('call', 2).catch((e) => e);
  await settle();
  const [a, b] = ws.sentOfType('rpc');
  ws.receive({ type: 'error', ref: a.ref, code: 'RPC_ERROR', message: 'no', data: { why: 1 } });
  ws.receive({ type: 'error', ref: b.ref, code: 'TIMEOUT', message: 'late' });
  assert.deepEqual([(await refused).code, (await refused).data], ['RPC_ERROR', { why: 1 }]);
  assert.equal((await late).code, 'TIMEOUT');
  await settle();
  assert.equal(ws.sentOfType('rpc').length, 2);
  fcl.disconnect();
});

test('rpc: an edge from before ids on rpc (BAD_FRAME) gets the call again without a random id, never without the caller\'s', { timeout: 30_000 }, async () => {
  const fcl = client();
  const ws = await connect(fcl);
  const called = fcl.rpc('call', 1);
  const mine = fcl.rpc('call', 2, { id: 'mine' }).catch((e) => e);
  await settle();
  for (const f of ws.sentOfType('rpc')) ws.receive({ type: 'error', ref: f.ref, code: 'BAD_FRAME', message: 'rpc takes no id yet: retry a call without one' });
  await settle();
  const [a, b, again] = ws.sentOfType('rpc');
  assert.ok(a.id && b.id === 'mine');
  assert.deepEqual([again.data, 'id' in again], [1, false]);
  assert.ok(again.timeout <= a.timeout);
  ws.receive({ type: 'reply', ref: again.ref, data: 'ok' });
  assert.equal(await called, 'ok');
  assert.equal((await mine).code, 'BAD_FRAME');
  assert.equal(ws.sentOfType('rpc').length, 3);
  fcl.disconnect();
});

test('liveness is judged by wall-clock time and traffic, not by late timer ticks', { timeout: 30_000 }, async (t) => {
  const realNow = Date.now;
  let skew = 0;
  Date.now = () => realNow() + skew;
  t.after(() => (Date.now = realNow));
  const fcl = client();
  const ws = await connect(fcl, { heartbeat: 100 });
  // The page slept for ten minutes (a frozen tab, a laptop lid): the first tick after it pings
  // rather than concluding the edge is dead.
  skew += 600_000;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(fcl.state, 'connected');
  const ping = ws.sentOfType('ping');
  assert.equal(ping.length, 1);
  ws.receive({ type: 'pong' });
  // Traffic keeps it alive however late the ticks are.
  skew += 600_000;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(fcl.state, 'connected');
  // A ping unanswered for 10 s of wall-clock time: dead.
  skew += 11_000;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(ws.readyState, 3);
  assert.ok(FakeSocket.all.length >= 2, 'reconnecting');
  fcl.disconnect();
});

test('welcome.offsets start the user and all scopes; the next auth resumes from them', { timeout: 30_000 }, async () => {
  const fcl = client();
  fcl.connect();
  const ws = await connect(fcl, { offsets: { user: 'u-7', all: null } });
  ws.drop(1006);
  await settle();
  const next = FakeSocket.last;
  next.open();
  assert.deepEqual(next.sent[0].since, { user: 'u-7' });
  fcl.disconnect();
});

test('join with rewind, and history pages, as the protocol spells them', { timeout: 30_000 }, async () => {
  const fcl = client();
  const ws = await connect(fcl);
  const room = fcl.room('r');
  const joined = room.join({ rewind: 5 });
  const page = room.history({ limit: 2, before: 'o9' });
  await settle();
  const [join, history] = [ws.next(), ws.next()];
  assert.deepEqual({ ...join, ref: 0 }, { type: 'join', room: 'r', rewind: 5, ref: 0 });
  assert.deepEqual({ ...history, ref: 0 }, { type: 'history', room: 'r', limit: 2, before: 'o9', ref: 0 });
  ws.receive({ type: 'joined', room: 'r', ref: join.ref, offset: 'o3', recovered: false });
  const msg = (n) => ({ type: 'msg', scope: 'room', room: 'r', event: 'e', data: n, offset: `o${n}`, id: `m${n}`, ts: n });
  ws.receive({ type: 'history', room: 'r', ref: history.ref, messages: [msg(1), msg(2)], offset: 'o3', more: true });
  assert.deepEqual(await joined, { recovered: false, offset: 'o3' });
  const got = await page;
  assert.deepEqual(got.messages.map((m) => m.data), [1, 2]);
  assert.equal(got.more, true);
  fcl.disconnect();
});

test('a socket that never opens is reported, with what the WebSocket said', { timeout: 30_000 }, async () => {
  const fcl = client();
  const errors = [];
  fcl.on('error', (e) => errors.push(e));
  fcl.connect();
  await settle();
  FakeSocket.last.onerror({ message: 'Unexpected server response: 404' });
  FakeSocket.last.drop(1006);
  assert.equal(errors[0].code, 'CONNECT_FAILED');
  assert.match(errors[0].message, /ws:\/\/edge\/ws: Unexpected server response: 404/);
  fcl.disconnect();
});

test('debug logs the state machine', { timeout: 30_000 }, async () => {
  const lines = [];
  const fcl = client({ debug: (...args) => lines.push(args) });
  await connect(fcl);
  fcl.disconnect();
  const kinds = lines.map((l) => l[0]);
  for (const kind of ['state', 'send', 'receive', 'closed']) assert.ok(kinds.includes(kind), `${kind} in ${kinds}`);
  assert.deepEqual(lines.filter((l) => l[0] === 'state').map((l) => l[1]), ['connecting', 'connected', 'disconnected']);
});

test('a failed refresh is retried with back-off until a token comes', { timeout: 30_000 }, async () => {
  let calls = 0;
  const fcl = client({
    backoff: { min: 20, max: 40 },
    refreshLead: 3600,
    getToken: () => {
      calls++;
      if (calls === 1) return jwt(Math.floor(Date.now() / 1000) + 60);
      if (calls < 4) throw new Error('token endpoint down');
      return jwt(Math.floor(Date.now() / 1000) + 7200);
    },
  });
  const errors = [];
  fcl.on('error', (e) => errors.push(e.code));
  const ws = await connect(fcl);
  const deadline = Date.now() + 5_000;
  while (ws.sentOfType('refresh').length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(ws.sentOfType('refresh').length, 1);
  assert.equal(calls, 4);
  assert.deepEqual(errors, ['TOKEN_FAILED', 'TOKEN_FAILED']);
});

test('a rejoin the edge cannot serve now (UNAVAILABLE) is tried again, not dropped', { timeout: 30_000 }, async () => {
  const fcl = client({ retries: 0 });
  const ws = await connect(fcl);
  const room = fcl.room('r');
  const first = room.join().catch((e) => e);
  await settle();
  const join = ws.next();
  ws.receive({ type: 'error', ref: join.ref, code: 'UNAVAILABLE', message: 'bus down', retry_after: 30 });
  assert.equal((await first).code, 'UNAVAILABLE');
  const deadline = Date.now() + 2_000;
  let again;
  while (!(again = ws.next()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(again?.type, 'join', 'tried again after retry_after');
  ws.receive({ type: 'joined', room: 'r', ref: again.ref, offset: null, recovered: false });
  await settle();
  assert.equal(room.state, 'joined');
});

test('4004 (encryption required) and 4011-4999 stop the client like 4010', { timeout: 30_000 }, async () => {
  for (const code of [4004, 4011, 4999]) {
    FakeSocket.all = [];
    const fcl = client();
    const ws = await connect(fcl);
    ws.drop(code, 'stop');
    await settle();
    assert.equal(FakeSocket.all.length, 1, `${code}: not reconnected`);
    assert.equal(fcl.state, 'disconnected');
  }
});

test('whatever was pending, sent or not, rejects at once with the reason the client stopped', { timeout: 30_000 }, async () => {
  const request = fc.constantFrom('publish', 'send', 'rpc', 'join', 'history', 'presence');
  const script = fc.record({
    before: fc.array(request, { maxLength: 4 }), // asked while connecting
    after: fc.array(request, { maxLength: 4 }), // asked once welcomed
    welcomed: fc.boolean(),
    close: fc.constantFrom([4001, 'UNAUTHORIZED'], [4010, 'CLOSED'], [4042, 'CLOSED']),
  });
  await fc.assert(
    fc.asyncProperty(script, async ({ before, after, welcomed, close: [code, expected] }) => {
      FakeSocket.all = [];
      const fcl = client();
      const ask = (kind, i) =>
        ({
          publish: () => fcl.room('r').publish('e', i),
          send: () => fcl.send('e', i),
          rpc: () => fcl.rpc('e', i),
          join: () => fcl.room(`j${i}`).join(),
          history: () => fcl.room('r').history(),
          presence: () => fcl.room('r').presence(),
        })[kind]().then(
          () => 'resolved',
          (e) => e.code,
        );
      fcl.connect();
      const pending = before.map(ask);
      await settle(1);
      const ws = FakeSocket.last;
      ws.open();
      if (welcomed && code !== 4001) {
        ws.receive(welcome());
        pending.push(...after.map((kind, i) => ask(kind, i + 10)));
        await settle(1);
      }
      const started = Date.now();
      ws.drop(code, 'go away');
      const outcomes = await Promise.all(pending);
      assert.ok(Date.now() - started < 500, 'at once, not at the timeout');
      assert.deepEqual(outcomes, pending.map(() => expected));
      fcl.disconnect();
    }),
    { numRuns: 100 },
  );
});

test('disconnect and connect again while the token is on its way open one socket', { timeout: 30_000 }, async () => {
  let release;
  const fcl = client({ getToken: () => new Promise((resolve) => (release = resolve)) });
  fcl.connect();
  await settle(1);
  fcl.disconnect();
  fcl.connect();
  await settle(1);
  release('t');
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(fcl.state, 'connecting');
});
