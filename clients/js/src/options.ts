/** What a WebSocket implementation must offer (the browser's, Node's global one, or `ws`'s). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Options of a client. */
export interface Options {
  /** A fixed token (use `getToken` for one that expires). */
  token?: string;
  /** Called for a token before every connection and before a refresh. */
  getToken?: () => string | Promise<string>;
  /** A WebSocket constructor, when there is no global one (e.g. `ws` in Node). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocketLike;
  /** How long a request (join, publish, send, presence) may take, in ms. Default 10 000. */
  timeout?: number;
  /** Shortest and longest reconnect delays, in ms. Default 500 and 20 000. */
  backoff?: { min: number; max: number };
  /** Refresh a JWT this many seconds before it expires. Default 60. */
  refreshLead?: number;
  /** Times a request refused with `retry_after` (RATE_LIMITED, UNAVAILABLE) is retried after
   * waiting exactly that long. Default 3. */
  retries?: number;
}
