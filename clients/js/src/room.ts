import { Emitter } from './events.js';
import type { JoinInfo, Message, PresenceClient, PresenceStats, RoomHost } from './types.js';

/** A room's events: the application's (by event name), and the client's own, `$`-prefixed
 * (no application event can start with `$`). */
export type RoomEvents<E> = { [K in keyof E & string]: [E[K], Message<E[K]>] } & {
  /** Joined (or rejoined after a reconnect): `recovered` says whether anything may be lost. */
  $joined: [JoinInfo];
  /** Left (by the application, a worker, or a refresh that revoked the room). */
  $left: [{ by?: string }];
  /** Messages up to `offset` may never arrive: reload the room's state. */
  $gap: [{ offset: string | null }];
  $presence_join: [PresenceClient];
  $presence_leave: [PresenceClient];
};

/** A room: join it, hear its messages, publish to it, ask who is there. */
export class Room<E extends Record<string, unknown> = Record<string, unknown>> extends Emitter<
  RoomEvents<E>
> {
  /** Whether the connection is in the room now. */
  joined = false;
  /** The last offset delivered (sent back as `since` on a rejoin). */
  offset: string | undefined;
  private wanted = false;
  private joining = 0;
  private holders = 0;
  private leaving: any;

  constructor(
    private readonly fc: RoomHost,
    /** The room's name. */
    readonly name: string,
  ) {
    super();
  }

  /** Joins (with `since`, when it was joined before, so nothing is lost or repeated); the
   * client rejoins it after every reconnect until `leave`. */
  async join(): Promise<JoinInfo> {
    this.wanted = true;
    // While this request waits for the connection, a reconnect must not send a second join.
    this.joining++;
    try {
      return info(await this.fc.request(() => this.joinFrame()));
    } finally {
      this.joining--;
    }
  }

  /** Leaves; it is not rejoined after a reconnect. */
  async leave(): Promise<void> {
    this.wanted = false;
    if (this.fc.state !== 'connected' || !this.joined) return;
    this.joined = false;
    await this.fc.request({ type: 'leave', room: this.name });
  }

  /** Joins for one more user (a React component); `release` lets go, leaving after `delay` ms
   * once nobody holds it, unless it is held again meanwhile (StrictMode's double mount). */
  hold(): void {
    this.holders++;
    clearTimeout(this.leaving);
    this.leaving = undefined;
    if (!this.wanted) this.join().catch((e) => this.fc.report(e));
  }

  /** See `hold`. */
  release(delay = 1_000): void {
    if (--this.holders > 0) return;
    this.leaving = setTimeout(() => this.holders <= 0 && this.leave().catch((e) => this.fc.report(e)), delay);
  }

  /** Publishes to the room (the token's `pub` claim must allow it); resolves with its offset. */
  async publish<K extends keyof E & string>(event: K, data: E[K], options: { echo?: boolean } = {}): Promise<{ offset: string }> {
    const ack = await this.fc.request({ type: 'publish', room: this.name, event, data, echo: options.echo ?? true });
    return { offset: ack.offset };
  }

  /** Who is in the room (presence must be on for it). */
  async presence(): Promise<PresenceClient[]> {
    return (await this.fc.request({ type: 'presence', room: this.name })).clients;
  }

  /** How many clients and users are in the room. */
  async presenceStats(): Promise<PresenceStats> {
    const { clients, users } = await this.fc.request({ type: 'presence_stats', room: this.name });
    return { clients, users };
  }

  /** @internal After a reconnect: back in, from the last offset. */
  rejoin(): void {
    this.joined = false;
    if (this.wanted && this.joining === 0) this.fc.request(() => this.joinFrame()).catch((e) => this.fc.report(e));
  }

  /** @internal A frame for this room. */
  handle(frame: any): void {
    switch (frame.type) {
      case 'msg':
        this.offset = frame.offset;
        return this.fire(frame.event, frame.data, frame);
      case 'joined':
        this.joined = true;
        // With no offset yet, resume from where the room stands now.
        if (this.offset === undefined && frame.offset) this.offset = frame.offset;
        return this.fire('$joined', info(frame));
      case 'left':
        this.joined = false;
        if (frame.by === 'server') this.wanted = false;
        return this.fire('$left', { by: frame.by });
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

  private joinFrame(): Record<string, unknown> {
    return { type: 'join', room: this.name, ...(this.offset ? { since: this.offset } : {}) };
  }
}

function info(frame: any): JoinInfo {
  return { recovered: !!frame.recovered, offset: frame.offset ?? null, ...(frame.by ? { by: frame.by } : {}) };
}
