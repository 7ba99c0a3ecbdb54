/** Codes the edge answers a refused frame with (see the protocol's error table). */
export type ServerErrorCode =
  | 'BAD_FRAME'
  | 'UNKNOWN_TYPE'
  | 'FORBIDDEN'
  | 'INVALID_ROOM'
  | 'TOO_MANY_ROOMS'
  | 'NOT_JOINED'
  | 'RATE_LIMITED'
  | 'TOO_LARGE'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  | 'TIMEOUT'
  | 'RPC_ERROR';

/**
 * Codes the client itself reports:
 * - `DISCONNECTED`: the connection closed before the answer came (it may still have been handled);
 * - `UNAUTHORIZED`: the edge refused the token (close 4001); the client stopped;
 * - `CLOSED`: the application's back end (4010 to 4999), an edge that requires encryption or
 *   does not offer the encryption the client asked for (4004), or `disconnect()` ended the
 *   connection;
 * - `CONNECT_FAILED`: the WebSocket did not open (wrong URL, HTTP error, edge down);
 * - `TOKEN_FAILED`: `getToken` threw or rejected;
 * - `LEFT`: `leave()` was called before the join was answered.
 */
export type ClientErrorCode = 'DISCONNECTED' | 'UNAUTHORIZED' | 'CLOSED' | 'CONNECT_FAILED' | 'TOKEN_FAILED' | 'LEFT';

/** Every code a {@link FerrocastError} can carry. */
export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** A refused or failed request, or a failure of the connection. */
export class FerrocastError extends Error {
  constructor(
    /** What failed: the edge's error code, or one of the client's own. */
    readonly code: ErrorCode,
    message: string,
    /** Milliseconds to wait before the same request can succeed, when the edge said so. */
    readonly retryAfter?: number,
    /** What came with it: a worker's `data` for `RPC_ERROR`, the close code for a closed connection. */
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'FerrocastError';
  }
}
