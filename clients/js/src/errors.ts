/** A refused or failed request: `code` is the edge's error code (or `TIMEOUT`, `DISCONNECTED`). */
export class FerrocastError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Milliseconds to wait before the same request can succeed, when the edge said so. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'FerrocastError';
  }
}
