import { FerrocastError } from './errors.js';
import { Emitter } from './events.js';
import { randomId } from './ids.js';
import type {
  HistoryPage,
  JoinInfo,
  JoinOptions,
  LeftInfo,
  Message,
  PresenceClient,
  PresenceStats,
  RequestOptions,
  RoomHost,
  RoomState,
} from './types.js';

/** A room's events: the application's (by event name), and the client's own, `$`-prefixed
 * (no application event can start with `$`). */
export type RoomEvents<E> = { [K in keyof E & string]: [E[K], Message<E[K]>] } & {
  /** Joined (or rejoined after a reconnect): `recovered` says whether anything may be lost. */
  $joined: [JoinInfo];
  /** Left: by the application's `leave()`, a worker or a refresh, or lost on a reconnect. */
  $left: [LeftInfo];
  /** Messages up to `offset` may never arrive: reload the room's state. */
  $gap: [{ offset: string | null }];
  $presence_join: [PresenceClient];
  $presence_leave: [PresenceClient];
  /** `state` changed. */
  $state: [RoomState];
};

type Waiter = [(info: JoinInfo) => void, (error: FerrocastError) => void];

/** A room: join it, hear its messages, publish to it, read its history, ask who is there. */
export class Room<E extends Record<string, unknown> = Record<string, unknown>> extends Emitter<RoomEvents<E>> {
  /** Whether the connection is in the room now (the edge said `joined`). */
  joined = false;
  /** Where the room stands (see {@link RoomState}); `$state` tells each change. */
  state: RoomState = 'left';
  /** Why the room is in state `error`. */
  error: FerrocastError | null = null;
  /** The last offset delivered (sent back as `since` on a rejoin). */
  offset: string | undefined;
  // What the application wants; `joined` is what the edge said. `sync` brings the second in
  // line with the first, one join or leave in flight at a time, so a leave can never be
  // overtaken by the join it cancels.
  private wanted = false;
  private busy: Promise<void> | null = null;
  private entered = false;
  private waiters: Waiter[] = [];
  private rewind: number | undefined;
  private info: JoinInfo | undefined;
  private holders = 0;
  private leaving: any;

  /** @internal Rooms come from `fc.room(name)`. */
  constructor(
    private readonly fc: RoomHost,
    /** The room's name. */
    readonly name: string,
  ) {
    super();
  }

  /** Joins (with `since` when it was joined before, so nothing is lost or repeated); the client
   * rejoins it after every reconnect until `leave`. Rejects with `LEFT` if `leave()` comes
   * first, or with the edge's refusal. */
  join(options: JoinOptions = {}): Promise<JoinInfo> {
    this.wanted = true;
    // Already in: a rewind could bring nothing more (the edge answers a second join with no replay).
    if (this.joined && !this.busy) return Promise.resolve(this.info!);
    this.rewind = options.rewind;
    return new Promise((resolve, reject) => {
      this.waiters.push([resolve, reject]);
      this.setState('joining');
      this.sync();
    });
  }

  /** Leaves: a join not sent yet is never sent, one not answered yet is followed by a leave,
   * and the room is not rejoined after a reconnect. Resolves once out. */
  async leave(): Promise<void> {
    this.wanted = false;
    this.rewind = undefined;
    this.settle(new FerrocastError('LEFT', `left ${this.name} before the join was answered`));
    this.setState('left');
    // Joined on an earlier connection: nothing to tell the edge, only the application.
    if (this.entered && !this.joined) this.out('client');
    this.sync();
    // Connected, a join in flight is followed by its leave; disconnected, it is never sent.
    while (this.busy && this.fc.state === 'connected') await this.busy;
  }

  /** Joins for one more user (a React component); `release` lets go, leaving after `delay` ms
   * once nobody holds it, unless it is held again meanwhile (StrictMode's double mount). */
  hold(): void {
    this.holders++;
    clearTimeout(this.leaving);
    this.leaving = undefined;
    if (!this.wanted) this.join().catch((e) => e.code !== 'LEFT' && this.fc.report(e));
  }

  /** See `hold`. */
  release(delay = 1_000): void {
    if (--this.holders > 0) return;
    this.leaving = setTimeout(() => this.holders <= 0 && this.leave(), delay);
  }

  /** Publishes to the room (the token's `pub` claim must allow it); resolves with its offset.
   * Retries keep the frame's id (`options.id`, or a random one), so the message is stored once. */
  async publish<K extends keyof E & string>(
    event: K,
    data: E[K],
    options: { echo?: boolean } & RequestOptions = {},
  ): Promise<{ offset: string }> {
    const frame = { type: 'publish', room: this.name, event, data, echo: options.echo ?? true, id: options.id ?? randomId() };
    return { offset: (await this.fc.request(frame, true))!.offset };
  }

  /** A page of the room's history, oldest first: up to `limit` messages (default 20, at most
   * 100) before the offset `before` (default: the newest). Any room the token may join, joined
   * or not. The messages are returned, not delivered to the room's handlers. */
  async history(options: { limit?: number; before?: string } = {}): Promise<HistoryPage> {
    const { messages, offset, more } = (await this.fc.request({ type: 'history', room: this.name, ...options }, true))!;
    return { messages, offset: offset ?? null, more: !!more };
  }

  /** Who is in the room (presence must be on for it). */
  async presence(): Promise<PresenceClient[]> {
    return (await this.fc.request({ type: 'presence', room: this.name }, true))!.clients;
  }

  /** How many clients and users are in the room. */
  async presenceStats(): Promise<PresenceStats> {
    const { clients, users } = (await this.fc.request({ type: 'presence_stats', room: this.name }, true))!;
    return { clients, users };
  }

  /** @internal Sends the join or leave that brings the edge in line with `wanted`, if none is in flight. */
  sync(): void {
    const joining = this.wanted;
    if (this.busy) return;
    if (joining === this.joined) {
      // A join answered after a leave, then wanted again before its leave went out.
      if (joining && !this.entered) this.arrived();
      return;
    }
    this.busy = this.fc
      .request(() =>
        // Decided when it is sent: by then a leave may have made the join pointless.
        this.wanted !== joining || this.joined === joining
          ? null
          : joining
            ? { type: 'join', room: this.name, ...(this.rewind ? { rewind: this.rewind } : this.offset ? { since: this.offset } : {}) }
            : { type: 'leave', room: this.name },
      )
      .then(
        () => {
          this.busy = null;
          this.sync();
        },
        (e: FerrocastError) => {
          this.busy = null;
          this.failed(e, joining);
        },
      );
  }

  /** @internal The connection closed: not in the room any more, rejoined on the next one unless
   * the client gave up (`error`). */
  reset(error?: FerrocastError): void {
    this.joined = false;
    if (error) this.settle(error);
    if (this.wanted) this.setState('joining');
  }

  /** @internal A frame for this room. */
  handle(frame: any): void {
    switch (frame.type) {
      case 'msg':
        if (!this.wanted) return;
        this.offset = frame.offset;
        return this.fire(frame.event, frame.data, frame);
      case 'joined':
        this.joined = true;
        // With no offset yet, resume from where the room stands now.
        if (this.offset === undefined && frame.offset) this.offset = frame.offset;
        if (frame.by === 'server') this.wanted = true; // kept, and rejoined after a reconnect
        this.info = info(frame);
        // Unless it is a ghost, which `sync` follows with a leave.
        if (this.wanted) this.arrived();
        return;
      case 'left':
        this.joined = false;
        if (frame.by === 'server') {
          this.wanted = false;
          this.setState('left');
        }
        if (this.entered) this.out(frame.by ?? 'client');
        return;
      case 'gap':
        if (frame.offset) this.offset = frame.offset;
        return this.fire('$gap', { offset: frame.offset ?? null });
      case 'presence_join':
      case 'presence_leave':
        return this.fire(`$${frame.type}`, {
          client: frame.client,
          user: frame.user,
          ...(frame.info ? { info: frame.info } : {}),
        });
    }
  }

  private arrived(): void {
    this.rewind = undefined;
    this.entered = true;
    this.error = null;
    this.setState('joined');
    this.settle(undefined, this.info);
    this.fire('$joined', this.info!);
  }

  private failed(e: FerrocastError, joining: boolean): void {
    // Lost with its connection: again on the next one.
    if (e.code === 'DISCONNECTED') return this.sync();
    if (!joining) {
      if (e.code !== 'NOT_JOINED') this.fc.report(e);
      return;
    }
    const waited = this.waiters.length > 0;
    this.settle(e);
    // Not connected in time, or the client stopped: the room is still wanted for later.
    if (['TIMEOUT', 'UNAUTHORIZED', 'CLOSED'].includes(e.code)) return;
    // Busy (Redis down, rate limited) beyond the request's own retries: still wanted, tried again.
    if (e.retryAfter !== undefined) {
      setTimeout(() => this.sync(), e.retryAfter);
      return;
    }
    this.wanted = false;
    this.error = e;
    this.setState('error');
    if (this.entered) {
      this.out('lost', e);
      this.fc.lost(this);
    }
    if (!waited) this.fc.report(e);
  }

  private out(by: LeftInfo['by'], error?: FerrocastError): void {
    this.entered = false;
    this.fire('$left', error ? { by, error } : { by });
  }

  private settle(error?: FerrocastError, joined?: JoinInfo): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const [resolve, reject] of waiters) error ? reject(error) : resolve(joined!);
  }

  private setState(state: RoomState): void {
    if (this.state === state) return;
    this.state = state;
    this.fire('$state', state);
  }
}

function info(frame: any): JoinInfo {
  return { recovered: !!frame.recovered, offset: frame.offset ?? null, ...(frame.by ? { by: frame.by } : {}) };
}
