/** Where a message was addressed. */
export type Scope = 'room' | 'user' | 'client' | 'all';

/** A delivered message, as the edge sent it. */
export interface Message<D = unknown> {
  type: 'msg';
  scope: Scope;
  /** The room, for room scope. */
  room?: string;
  event: string;
  data: D;
  /** Opaque: store it, send it back, never compare it. */
  offset: string;
  /** The publisher's message id. */
  id: string;
  /** Publish time, Unix ms. */
  ts: number;
}

/** A client present in a room. */
export interface PresenceClient {
  client: string;
  user: string;
  info?: Record<string, unknown>;
}

/** Counts of a room's presence. */
export interface PresenceStats {
  clients: number;
  users: number;
}

/** What a (re)join of a room reported. */
export interface JoinInfo {
  /** Whether every message since the last one this client saw was delivered. */
  recovered: boolean;
  /** Newest offset of the room's history, or null. */
  offset: string | null;
  /** `'server'` when a worker put the client in the room. */
  by?: string;
}

/** What a room needs of its client: requests, and somewhere to report background failures. */
export interface RoomHost {
  readonly state: 'disconnected' | 'connecting' | 'connected';
  request(frame: Record<string, unknown> | (() => Record<string, unknown>)): Promise<Record<string, any>>;
  report(error: Error & { code: string }): void;
}
