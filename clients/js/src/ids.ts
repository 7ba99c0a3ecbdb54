const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** A random request id (126 bits, in the protocol's id alphabet), so that a retried `publish` or
 * `send` is stored once however often its answer is lost. */
export function randomId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(21)), (b) => ALPHABET[b & 63]).join('');
}
