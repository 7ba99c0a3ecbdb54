import type { FerrocastError } from './errors.js';

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

/** Options of `room.join`. */
export interface JoinOptions {
  /** Start with the room's last `rewind` messages (1 to 100), delivered to the room's handlers
   * before live ones, with no gap or duplicate between them. Later rejoins resume from the
   * last offset instead. */
  rewind?: number;
}

/** Options of `publish`, `send` and `rpc`. */
export interface RequestOptions {
  /** The request's id (1 to 64 of `A-Z a-z 0-9 _ -`): the same id from the same user is stored
   * once, however often it is sent. Default: a random one, kept across the client's retries. */
  id?: string;
}

/** Options of `rpc`. */
export interface RpcOptions extends RequestOptions {
  /** How long to wait for the workers' answer, in ms, retries after a reconnect included
   * (1 to 60 000). Default: the client's `timeout`. */
  timeout?: number;
}

/** A page of a room's history. */
export interface HistoryPage<D = unknown> {
  /** Oldest first. */
  messages: Message<D>[];
  /** The history's newest offset (not the page's), or null for an empty history. */
  offset: string | null;
  /** Whether older messages remain: ask again with `before` set to the first message's offset. */
  more: boolean;
}

/** Where a room stands, as a UI shows it: `left` (not wanted), `joining` (wanted, not in yet:
 * also while reconnecting), `joined`, or `error` (refused; see `room.error`). */
export type RoomState = 'left' | 'joining' | 'joined' | 'error';

/** What made the client leave a room: the application's `leave()`, a worker or a refresh
 * (`server`), or a rejoin the edge refused after a reconnect (`lost`, with the `error`). */
export interface LeftInfo {
  by: 'client' | 'server' | 'lost';
  error?: FerrocastError;
}

/** @internal What a room needs of its client. */
export interface RoomHost {
  readonly state: 'disconnected' | 'connecting' | 'connected';
  request(frame: Record<string, unknown> | (() => Record<string, unknown> | null), again?: boolean): Promise<Record<string, any> | null>;
  report(error: FerrocastError): void;
  lost(room: any): void;
}
