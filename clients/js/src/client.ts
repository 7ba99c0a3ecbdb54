import { STABLE_MS, reconnectDelay } from './backoff.js';
import { dedup } from './dedup.js';
import { FerrocastError } from './errors.js';
import { Emitter } from './events.js';
import { expOf } from './jwt.js';
import type { Options, WebSocketLike } from './options.js';
import { requests } from './requests.js';
import type { Frame } from './requests.js';
import { Room } from './room.js';
import type { Message, Scope } from './types.js';

/** Connection states a UI can show. */
export type State = 'disconnected' | 'connecting' | 'connected';

/** A client's own events. */
export type ClientEvents = {
  state: [State];
  connected: [{ client: string; user: string; node: string; recovered: { user: boolean; all: boolean } }];
  disconnected: [{ code: number; reason: string; retryIn: number | null }];
  unauthorized: [string];
  error: [FerrocastError];
  user: [string, unknown, Message];
  all: [string, unknown, Message];
  client: [string, unknown, Message];
  gap: [{ scope: Scope; room?: string; offset: string | null }];
  joined: [Room];
  left: [Room];
};

/** One logical connection to Ferrocast edges, reconnecting as needed. */
export class Ferrocast extends Emitter<ClientEvents> {
  /** The connection's state. */
  state: State = 'disconnected';
  /** The client id of the current connection (changes on every reconnect). */
  clientId: string | null = null;
  private ws: WebSocketLike | null = null;
  private readonly rooms = new Map<string, Room<any>>();
  private readonly requests = requests();
  private readonly waiting = new Set<() => void>();
  private readonly offsets: { user?: string; all?: string } = {};
  private readonly fresh = dedup();
  private attempt = 0;
  private wanted = false;
  private retain = 0;
  private timers: Record<string, any> = {};
  private lastHeard = 0;
  private heartbeat = 25_000;
  private readonly opts: Required<Pick<Options, 'timeout' | 'backoff' | 'refreshLead' | 'retries'>> & Options;

  constructor(
    private readonly url: string | (() => string),
    options: Options = {},
  ) {
    super();
    this.opts = { timeout: 10_000, backoff: { min: 500, max: 20_000 }, refreshLead: 60, retries: 3, ...options };
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
    if (this.state === 'disconnected' && !this.timers.retry) void this.open();
  }

  /** Closes the connection for good (until `connect`). Pending requests are rejected. */
  disconnect(): void {
    this.wanted = false;
    this.stopTimers();
    this.ws?.close(1000, 'bye');
    this.closed(1000, 'closed by the client');
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

  /** Sends `data` upstream to the application's workers; resolves with the inbox entry id. */
  async send(event: string, data: unknown): Promise<{ id: string }> {
    const ack = await this.request({ type: 'send', event, data });
    return { id: ack.id };
  }

  /** Sends a frame with a `ref` and resolves with its answer; retries after `retry_after`. A
   * function is called for the frame when it is sent (a join's `since` is the latest then). */
  async request(frame: Frame | (() => Frame), retries = this.opts.retries): Promise<Frame> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(frame);
      } catch (error) {
        const e = error as FerrocastError;
        if (e.retryAfter === undefined || attempt >= retries) throw e;
        await new Promise((r) => setTimeout(r, e.retryAfter));
      }
    }
  }

  private async once(make: Frame | (() => Frame)): Promise<Frame> {
    const deadline = Date.now() + this.opts.timeout;
    if (this.state !== 'connected') {
      this.connect();
      await this.until(() => this.state === 'connected', deadline);
    }
    const frame = typeof make === 'function' ? make() : make;
    return this.requests.send(frame, deadline, (f) => this.write(f));
  }

  /** Waits until `ready()` holds (re-checked on every state change), or rejects at `deadline`. */
  private until(ready: () => boolean, deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!ready()) return false;
        this.waiting.delete(check);
        clearTimeout(timer);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        this.waiting.delete(check);
        reject(new FerrocastError('TIMEOUT', 'not connected in time'));
      }, Math.max(0, deadline - Date.now()));
      if (!check()) this.waiting.add(check);
    });
  }

  /** @internal Reports a failure no caller waits for. */
  report(error: FerrocastError): void {
    this.emit('error', error);
  }

  /** @internal Writes a frame if the socket is open. */
  write(frame: Frame): void {
    if (this.ws?.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  private setState(state: State): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
    for (const check of [...this.waiting]) check();
  }

  private async open(): Promise<void> {
    this.setState('connecting');
    let token: string;
    try {
      token = this.opts.getToken ? await this.opts.getToken() : (this.opts.token ?? '');
    } catch (error) {
      return this.retryLater(1006, `getToken failed: ${String(error)}`);
    }
    if (!this.wanted) return this.setState('disconnected');
    const WS = this.opts.WebSocket ?? (globalThis as any).WebSocket;
    if (!WS) throw new Error('no WebSocket: pass one in options.WebSocket');
    const url = typeof this.url === 'function' ? this.url() : this.url;
    const ws: WebSocketLike = new WS(url, 'ferrocast.v1.json');
    this.ws = ws;
    ws.onopen = () => {
      const since = { ...this.offsets };
      ws.send(JSON.stringify({ type: 'auth', token, ...(since.user || since.all ? { since } : {}) }));
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws || typeof event.data !== 'string') return;
      this.lastHeard = Date.now();
      let frame: Frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.dispatch(frame, token);
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.closed(event.code, event.reason);
    };
    ws.onerror = () => {};
  }

  private dispatch(frame: Frame, token: string): void {
    // A join's answer is also news for the room.
    if (this.requests.handle(frame) && frame.type !== 'joined') return;
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
        else if (frame.offset) this.offsets[frame.scope as 'user' | 'all'] = frame.offset;
        return this.emit('gap', gap);
      }
      case 'refreshed':
        return this.scheduleRefresh(frame.exp);
      case 'error':
        return this.emit('error', new FerrocastError(frame.code, frame.message, frame.retry_after));
    }
  }

  private welcomed(frame: Frame, token: string): void {
    this.clientId = frame.client;
    this.heartbeat = frame.heartbeat || 25_000;
    this.setState('connected');
    this.timers.stable = setTimeout(() => (this.attempt = 0), STABLE_MS);
    this.timers.beat = setInterval(() => this.beat(), this.heartbeat / 2);
    this.scheduleRefresh(expOf(token));
    this.emit('connected', frame as ClientEvents['connected'][0]);
    // Back into every room the application joined, each from its last offset.
    for (const room of this.rooms.values()) room.rejoin();
  }

  /** Pings when the line has been quiet for a heartbeat; gives up on it after two. */
  private beat(): void {
    const quiet = Date.now() - this.lastHeard;
    if (quiet > 2 * this.heartbeat + 5_000) this.ws?.close(4002, 'heartbeat timeout');
    else if (quiet > this.heartbeat) this.write({ type: 'ping' });
  }

  private scheduleRefresh(exp: number | undefined): void {
    clearTimeout(this.timers.refresh);
    if (!exp || !this.opts.getToken) return;
    const lead = this.opts.refreshLead * 1000 * (1 + Math.random() * 0.2);
    const wait = Math.min(2 ** 31 - 1, Math.max(1_000, exp * 1000 - Date.now() - lead));
    this.timers.refresh = setTimeout(async () => {
      try {
        this.write({ type: 'refresh', token: await this.opts.getToken!() });
      } catch (error) {
        this.emit('error', new FerrocastError('INTERNAL', `getToken failed: ${String(error)}`));
      }
    }, wait);
  }

  private message(msg: Message): void {
    if (!this.fresh(msg)) return;
    if (msg.scope === 'room') return this.room(msg.room!).handle(msg);
    if (msg.scope !== 'client') this.offsets[msg.scope] = msg.offset;
    this.emit(msg.scope, msg.event, msg.data, msg);
  }

  private stopTimers(): void {
    for (const name of ['stable', 'beat', 'refresh', 'retry']) {
      clearTimeout(this.timers[name]);
      clearInterval(this.timers[name]);
      this.timers[name] = undefined;
    }
  }

  private closed(code: number, reason: string): void {
    this.ws = null;
    this.clientId = null;
    this.stopTimers();
    this.requests.close();
    if (code === 4001) {
      // The same token would fail again: stop, and let the application decide.
      this.wanted = false;
      this.emit('unauthorized', reason);
    }
    this.retryLater(code, reason);
  }

  private retryLater(code: number, reason: string): void {
    this.setState('disconnected');
    if (code === 4010) this.wanted = false; // The application closed it, with its reason.
    let delay: number | null = null;
    if (this.wanted) {
      delay = reconnectDelay(code, this.attempt++, this.opts.backoff);
      this.timers.retry = setTimeout(() => {
        this.timers.retry = undefined;
        if (this.wanted) void this.open();
      }, delay);
    }
    this.emit('disconnected', { code, reason, retryIn: delay });
  }
}
