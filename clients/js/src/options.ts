/** What a WebSocket implementation must offer (the browser's, Node's global one, or `ws`'s). */
export interface WebSocketLike {
  readonly readyState: number;
  /** Set to `'arraybuffer'` by a binary codec. */
  binaryType?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** How frames are written and read: JSON by default, MessagePack from `@ferrocast/client/msgpack`. */
export interface Codec {
  /** The WebSocket subprotocol offered (`ferrocast.v1.json`, `ferrocast.v1.msgpack`). */
  readonly protocol: string;
  /** Whether frames are binary (the socket's `binaryType` is then set to `arraybuffer`). */
  readonly binary?: boolean;
  /** A frame as the WebSocket sends it. */
  encode(frame: Record<string, unknown>): string | Uint8Array;
  /** A received message as a frame; `undefined` for what is not one. */
  decode(data: unknown): Record<string, any> | undefined;
}

/** Options of a client. */
export interface Options {
  /** A fixed token (use `getToken` for one that expires). */
  token?: string;
  /** Called for a new token: the first connection, a token within `refreshLead` seconds of its
   * `exp`, or one the edge refused as expired (4003). A token is reused across reconnects until
   * then; a failure is retried with back-off. */
  getToken?: () => string | Promise<string>;
  /** A WebSocket constructor, when there is no global one (e.g. `ws` in Node). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocketLike;
  /** How long a request (join, publish, send, rpc, presence, history) may take, in ms. Default 10 000. */
  timeout?: number;
  /** Shortest and longest reconnect delays, in ms. Default 500 and 20 000. */
  backoff?: { min: number; max: number };
  /** Refresh a JWT this many seconds before it expires. Default 60. */
  refreshLead?: number;
  /** Times a request refused with `retry_after` (RATE_LIMITED, UNAVAILABLE), or a `publish`,
   * `send` or `rpc` whose connection closed before its answer, is retried. Default 3. */
  retries?: number;
  /** Payload encryption: `encrypt` from `@ferrocast/client/encrypt` (protocol part E). Each new
   * WebSocket is handed to it with the codec, and the client talks through the socket it
   * returns. Default: none. */
  encrypt?: (socket: WebSocketLike, codec: Codec) => WebSocketLike;
  /** The encoding of frames; default JSON. */
  codec?: Codec;
  /** Logs the state machine (states, frames, closes, retries): `true` for `console.debug`, or a
   * function of your own. */
  debug?: boolean | ((...args: unknown[]) => void);
  /** Whether to follow the page's life (online/offline, visibility, back/forward cache) where
   * there is a `window`. Default true. */
  lifecycle?: boolean;
}
