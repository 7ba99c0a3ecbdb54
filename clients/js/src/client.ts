import { STABLE_MS, reconnectDelay } from './backoff.js';
import { json } from './codec.js';
import { dedup } from './dedup.js';
import { FerrocastError } from './errors.js';
import { Emitter } from './events.js';
import { randomId } from './ids.js';
import { expOf } from './jwt.js';
import { followPage } from './lifecycle.js';
import { PONG_MS, liveness } from './liveness.js';
import type { Codec, Options, WebSocketLike } from './options.js';
import { refusal, requests } from './requests.js';
import type { Frame } from './requests.js';
import { Room } from './room.js';
import { tokenSource } from './tokens.js';
import type { Message, RequestOptions, RpcOptions, Scope } from './types.js';

/** Connection states a UI can show. */
export type State = 'disconnected' | 'connecting' | 'connected';

/** What `welcome` said, as the `connected` event hands it on. */
export interface Welcome {
  /** This connection's client id. */
  client: string;
  /** The token's `sub`. */
  user: string;
  /** The edge's id. */
  node: string;
  /** Whether the user and `all` scopes were resumed with nothing lost. */
  recovered: { user: boolean; all: boolean };
}

/** Why the connection closed, as the `disconnected` event hands it on. */
export interface Disconnect {
  /** The WebSocket close code (1006 when it never opened or was dropped by the client). */
  code: number;
  reason: string;
  /** Milliseconds until the next attempt, or null when the client stopped. */
  retryIn: number | null;
  /** What it means for requests: `DISCONNECTED`, `UNAUTHORIZED`, `CLOSED` or `CONNECT_FAILED`. */
  error: FerrocastError;
}

/** A client's own events. */
export type ClientEvents = {
  state: [State];
  connected: [Welcome];
  disconnected: [Disconnect];
  /** 4001: the edge refused the token; the client stopped (call `connect()` with a new one). */
  unauthorized: [string];
  /** A failure no request waits for: a refused `refresh`, a room lost on reconnect, a failed
   * `getToken`, a WebSocket that did not open. */
  error: [FerrocastError];
  /** A message to this user (any of its connections): event name, data, message. */
  user: [string, unknown, Message];
  /** A message to everyone. */
  all: [string, unknown, Message];
  /** A message to this connection alone. */
  client: [string, unknown, Message];
  gap: [{ scope: Scope; room?: string; offset: string | null }];
  /** A worker joined this client to a room. */
  joined: [Room];
  /** A worker or a refresh took this client out of a room, or a room could not be rejoined. */
  left: [Room];
};

/** The application's disconnect (4010, or a code of its own up to 4999), or 4004: encryption
 * required and not set up (the edge requires it of a client without `encrypt`, or an edge
 * without encryption did not answer a client with it). Coming back would meet the same answer. */
const isFinal = (code: number) => code === 4004 || (code >= 4010 && code < 5000);

/** One logical connection to Ferrocast edges, reconnecting as needed. */
export class Ferrocast extends Emitter<ClientEvents> {
  /** The connection's state. */
  state: State = 'disconnected';
  /** The client id of the current connection (changes on every reconnect). */
  clientId: string | null = null;
  private ws: WebSocketLike | null = null;
  private readonly rooms = new Map<string, Room<any>>();
  private readonly requests = requests();
  private readonly waiting = new Set<[() => boolean, (e: FerrocastError) => void]>();
  private readonly offsets: { user?: string; all?: string } = {};
  private readonly fresh = dedup();
  private readonly codec: Codec;
  private readonly tokens;
  private readonly log?: (...args: unknown[]) => void;
  private attempt = 0;
  private wanted = false;
  private asleep = false;
  private generation = 0;
  private retain = 0;
  private timers: Record<string, any> = {};
  private alive?: ReturnType<typeof liveness>;
  private heartbeat = 25_000;
  private authToken = '';
  private unfollow?: () => void;
  private readonly opts: Required<Pick<Options, 'timeout' | 'backoff' | 'refreshLead' | 'retries'>> & Options;

  /** A client of the edges at `url` (a function is called on every connect, to rotate edges).
   * Nothing is sent until `connect()` or a request. */
  constructor(
    private readonly url: string | (() => string),
    options: Options = {},
  ) {
    super();
    this.opts = { timeout: 10_000, backoff: { min: 500, max: 20_000 }, refreshLead: 60, retries: 3, ...options };
    this.codec = options.codec ?? json;
    this.tokens = tokenSource(options.getToken ?? (() => options.token ?? ''), () => this.opts.refreshLead);
    const debug = options.debug;
    if (debug) this.log = debug === true ? (...args) => console.debug('[ferrocast]', ...args) : debug;
  }

  /** The room `name` (one object per name; nothing is sent until `join`). */
  room<E extends Record<string, unknown> = Record<string, unknown>>(name: string): Room<E> {
    let room = this.rooms.get(name);
    if (!room) this.rooms.set(name, (room = new Room<E>(this, name)));
    return room as Room<E>;
  }

  /** Connects (and stays connected, reconnecting, until `disconnect`). */
  connect(): void {
    this.wanted = true;
    if (this.opts.lifecycle !== false) this.unfollow ??= followPage(() => this.wake(), (why) => this.sleep(why));
    if (this.state === 'disconnected' && !this.timers.retry) void this.open();
  }

  /** Closes the connection for good (until `connect`). Pending requests are rejected with `CLOSED`. */
  disconnect(): void {
    this.wanted = false;
    this.unfollow?.();
    this.unfollow = undefined;
    this.drop(1000, 'closed by the client', new FerrocastError('CLOSED', 'disconnect() was called'));
  }

  /** Holds the connection open for one more user (a React provider); see `release`. */
  hold(): void {
    this.retain++;
    clearTimeout(this.timers.release);
    this.timers.release = undefined;
    this.connect();
  }

  /** Lets go of a `hold`; the last one disconnects after `delay` ms unless held again. */
  release(delay = 250): void {
    if (--this.retain > 0) return;
    this.timers.release = setTimeout(() => this.retain <= 0 && this.disconnect(), delay);
  }

  /** Sends `data` upstream to the application's workers; resolves with the inbox entry id.
   * The frame carries an id (`options.id`, or a random one) so that the automatic retries
   * (after `retry_after`, or a connection lost before the answer) store it once. */
  async send(event: string, data: unknown, options: RequestOptions = {}): Promise<{ id: string }> {
    const ack = await this.request({ type: 'send', event, data, id: options.id ?? randomId() }, true);
    return { id: ack!.id };
  }

  /** Calls the application's workers and resolves with their answer's `data`. A worker's refusal
   * rejects with `RPC_ERROR` (its `data` in the error's `data`); no answer within `timeout` ms
   * (default 10 000, at most 60 000) with `TIMEOUT`. The call carries an id (`options.id`, or a
   * random one): if the connection drops before the answer, it is sent again with that id after
   * the reconnect, within the same `timeout`, and the edge has the workers called once and hands
   * the retry their answer. (An edge from before ids on `rpc` gets a random id's call without
   * it, not resent.) */
  async rpc<T = unknown>(event: string, data: unknown, options: RpcOptions = {}): Promise<T> {
    const end = Date.now() + (options.timeout ?? this.opts.timeout);
    let id = options.id ?? randomId();
    // The edge answers TIMEOUT at the deadline; our own timer only covers a silent connection.
    const call = () => this.request(() => ({ type: 'rpc', event, data, id, timeout: Math.max(1, end - Date.now()) }), !!id, 0, end + 2_000);
    try {
      return (await call())!.data;
    } catch (e) {
      // An edge of v1.2 from before ids on `rpc` refuses any (BAD_FRAME): without one of the
      // caller's, call once without, as such an edge allows (not sent again after a drop).
      if (options.id || (e as FerrocastError).code !== 'BAD_FRAME') throw e;
      id = undefined as any;
      return (await call())!.data;
    }
  }

  /** @internal Sends a frame with a `ref` and resolves with its answer; retries after `retry_after`,
   * and `again` frames after a lost connection. A function is called for the frame when it is
   * sent (a join's `since` is the latest then); it returns null to cancel (resolving null).
   * Each attempt has `timeout` ms, or all of them end at `end` (Unix ms) when it is given. */
  async request(frame: Frame | (() => Frame | null), again = false, timeout = this.opts.timeout, end?: number): Promise<Frame | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(frame, end ?? Date.now() + timeout);
      } catch (error) {
        const e = error as FerrocastError;
        const retry = e.code === 'DISCONNECTED' && again ? 0 : e.retryAfter;
        if (retry === undefined || attempt >= this.opts.retries) throw e;
        await new Promise((r) => setTimeout(r, retry));
      }
    }
  }

  private async once(make: Frame | (() => Frame | null), deadline: number): Promise<Frame | null> {
    if (this.state !== 'connected') {
      this.connect();
      await this.until(deadline);
    }
    const frame = typeof make === 'function' ? make() : make;
    return frame && this.requests.send(frame, deadline, (f) => this.write(f));
  }

  /** Waits until connected, or rejects at `deadline`, or at once with the reason the client gave up. */
  private until(deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry: [() => boolean, (e: FerrocastError) => void] = [
        () => this.state === 'connected' && (done(), resolve(), true),
        (e) => (done(), reject(e)),
      ];
      const done = () => {
        this.waiting.delete(entry);
        clearTimeout(timer);
      };
      const timer = setTimeout(() => entry[1](new FerrocastError('TIMEOUT', 'not connected in time')), Math.max(0, deadline - Date.now()));
      this.waiting.add(entry);
    });
  }

  /** @internal Reports a failure no caller waits for. */
  report(error: FerrocastError): void {
    this.emit('error', error);
  }

  /** @internal A room tells that it is out because of the edge, not the application. */
  lost(room: Room): void {
    this.emit('left', room);
  }

  /** @internal Writes a frame if the socket is open. */
  write(frame: Frame): void {
    if (this.ws?.readyState !== 1) return;
    this.log?.('send', frame);
    this.ws.send(this.codec.encode(frame));
  }

  private setState(state: State): void {
    if (this.state === state) return;
    this.log?.('state', state);
    this.state = state;
    this.emit('state', state);
    for (const [ready] of [...this.waiting]) ready();
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.setState('connecting');
    let token: string;
    try {
      token = await this.tokens.get();
    } catch (error) {
      if (generation !== this.generation) return;
      const e = new FerrocastError('TOKEN_FAILED', `getToken failed: ${String(error)}`);
      this.emit('error', e);
      return this.retryLater(1006, e.message, e);
    }
    // disconnect(), or a sleep, while the token was on its way.
    if (generation !== this.generation) return;
    const WS = this.opts.WebSocket ?? (globalThis as any).WebSocket;
    if (!WS) throw new Error('no WebSocket: pass one in options.WebSocket');
    const url = typeof this.url === 'function' ? this.url() : this.url;
    let ws: WebSocketLike = new WS(url, this.codec.protocol);
    if (this.codec.binary) ws.binaryType = 'arraybuffer';
    if (this.opts.encrypt) ws = this.opts.encrypt(ws, this.codec);
    this.ws = ws;
    let opened = false;
    let failure = '';
    ws.onopen = () => {
      opened = true;
      const since = { ...this.offsets };
      this.write({ type: 'auth', token, ...(since.user || since.all ? { since } : {}) });
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.alive?.heard();
      const frame = this.codec.decode(event.data);
      this.log?.('receive', frame);
      if (frame) this.dispatch(frame, token);
    };
    ws.onerror = (event: any) => (failure = event?.message ?? '');
    ws.onclose = ({ code, reason }) => {
      if (this.ws !== ws) return;
      if (opened) return this.closed(code, reason);
      // Browsers hide why (an HTTP 404 or 403 on upgrade, a refused connection): `ws` says it.
      const e = new FerrocastError('CONNECT_FAILED', `could not open ${url}${failure && `: ${failure}`}`, undefined, code);
      this.emit('error', e);
      this.closed(code, reason, e);
    };
  }

  private dispatch(frame: Frame, token: string): void {
    const answered = this.requests.handle(frame);
    switch (frame.type) {
      case 'welcome':
        return this.welcomed(frame, token);
      case 'msg':
        return this.message(frame as Message);
      case 'joined':
      case 'left':
      case 'presence_join':
      case 'presence_leave': {
        const room = this.room(frame.room);
        room.handle(frame);
        if (frame.by === 'server') this.emit(frame.type, room);
        return;
      }
      case 'gap': {
        const gap = { scope: frame.scope, room: frame.room, offset: frame.offset ?? null };
        if (frame.scope === 'room') this.room(frame.room).handle(frame);
        else if (frame.offset && frame.scope !== 'client') this.offsets[frame.scope as 'user' | 'all'] = frame.offset;
        return this.emit('gap', gap);
      }
      case 'refreshed':
        return this.scheduleRefresh(frame.exp);
      case 'error':
        if (!answered) this.emit('error', refusal(frame));
    }
  }

  private welcomed(frame: Frame, token: string): void {
    this.clientId = frame.client;
    this.heartbeat = frame.heartbeat || 25_000;
    this.authToken = token;
    this.alive = liveness(
      () => this.write({ type: 'ping' }),
      () => this.drop(4002, 'no answer to a ping'),
    );
    // Where the user and `all` scopes stood at welcome: resuming from there loses nothing
    // published after it, even with no message received in that scope before a drop.
    for (const scope of ['user', 'all'] as const) this.offsets[scope] ??= frame.offsets?.[scope] ?? undefined;
    this.timers.stable = setTimeout(() => (this.attempt = 0), STABLE_MS);
    this.timers.beat = setInterval(() => this.alive!.tick(this.heartbeat), this.heartbeat / 2);
    this.scheduleRefresh(expOf(token));
    this.setState('connected');
    this.emit('connected', frame as Welcome);
    // Back into every room the application (or a worker) joined, each from its last offset.
    for (const room of this.rooms.values()) room.sync();
  }

  /** The page may have been asleep: probe a connection, or reconnect now rather than after a backoff. */
  private wake(): void {
    this.log?.('wake');
    this.asleep = false;
    if (!this.wanted) return;
    if (this.state === 'connected') {
      this.alive!.check();
      clearTimeout(this.timers.probe);
      this.timers.probe = setTimeout(() => this.alive?.tick(this.heartbeat), PONG_MS + 1);
    } else if (this.state === 'disconnected') {
      clearTimeout(this.timers.retry);
      this.timers.retry = undefined;
      void this.open();
    }
  }

  /** Offline: close now (a dead network never finishes a close) and retry, at once when back
   * online. Into the back/forward cache: close, and reconnect only when shown again. */
  private sleep(why: string): void {
    this.log?.('sleep', why);
    if (!this.wanted) return;
    this.asleep = why === 'pagehide';
    this.drop(1006, why);
  }

  /** Closes the socket without waiting for a close handshake a dead network would never finish. */
  private drop(code: number, reason: string, error?: FerrocastError): void {
    const ws = this.ws;
    this.generation++;
    if (ws) {
      this.ws = null;
      ws.onclose = ws.onmessage = null;
      try {
        ws.close(1000, reason);
      } catch {
        // Already closing.
      }
    }
    if (ws || this.state !== 'disconnected' || this.timers.retry || error) this.closed(code, reason, error);
  }

  private scheduleRefresh(exp: number | undefined): void {
    clearTimeout(this.timers.refresh);
    if (!exp || !this.opts.getToken) return;
    const lead = this.opts.refreshLead * 1000 * (1 + Math.random() * 0.2);
    const wait = Math.min(2 ** 31 - 1, Math.max(1_000, exp * 1000 - Date.now() - lead));
    this.timers.refresh = setTimeout(() => this.refresh(0), wait);
  }

  private async refresh(attempt: number): Promise<void> {
    try {
      const token = await this.tokens.get(true);
      // During a reconnect the new connection authenticates with it instead.
      if (this.state === 'connected' && token !== this.authToken) {
        this.authToken = token;
        this.write({ type: 'refresh', token });
      }
    } catch (error) {
      this.emit('error', new FerrocastError('TOKEN_FAILED', `getToken failed: ${String(error)}`));
      if (this.state === 'connected') {
        this.timers.refresh = setTimeout(() => this.refresh(attempt + 1), reconnectDelay(0, attempt, this.opts.backoff));
      }
    }
  }

  private message(msg: Message): void {
    if (!this.fresh(msg)) return;
    if (msg.scope === 'room') return this.room(msg.room!).handle(msg);
    if (msg.scope !== 'client') this.offsets[msg.scope] = msg.offset;
    this.emit(msg.scope, msg.event, msg.data, msg);
  }

  private stopTimers(): void {
    for (const name of ['stable', 'beat', 'refresh', 'retry', 'probe']) {
      clearTimeout(this.timers[name]);
      clearInterval(this.timers[name]);
      this.timers[name] = undefined;
    }
  }

  private closed(code: number, reason: string, error?: FerrocastError): void {
    this.log?.('closed', code, reason);
    this.ws = null;
    this.clientId = null;
    this.stopTimers();
    const e =
      error ??
      (code === 4001
        ? new FerrocastError('UNAUTHORIZED', reason || 'the edge refused the token', undefined, code)
        : isFinal(code)
          ? new FerrocastError('CLOSED', reason || 'disconnected by the application', undefined, code)
          : new FerrocastError('DISCONNECTED', `the connection closed (${code}${reason && ` ${reason}`})`, undefined, code));
    // The same token would fail again; an application close says not to come back.
    if (code === 4001 || isFinal(code)) this.wanted = false;
    if (code === 4001 || code === 4003) this.tokens.drop();
    this.requests.close(e);
    if (!this.wanted) for (const [, fail] of [...this.waiting]) fail(e);
    for (const room of this.rooms.values()) room.reset(this.wanted ? undefined : e);
    if (code === 4001) this.emit('unauthorized', reason);
    this.retryLater(code, reason, e);
  }

  private retryLater(code: number, reason: string, error: FerrocastError): void {
    this.setState('disconnected');
    let delay: number | null = null;
    if (this.wanted && !this.asleep) {
      delay = reconnectDelay(code, this.attempt++, this.opts.backoff);
      this.log?.('retry in', delay);
      this.timers.retry = setTimeout(() => {
        this.timers.retry = undefined;
        if (this.wanted) void this.open();
      }, delay);
    }
    this.emit('disconnected', { code, reason, retryIn: delay, error });
  }
}
