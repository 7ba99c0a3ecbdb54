/** Connections that stayed up this long reset the backoff. */
export const STABLE_MS = 10_000;

/** How long to wait before reconnecting after a close with `code`, `attempt` reconnects into a
 * run: full jitter under a doubling ceiling, so that clients dropped together come back apart. */
export function reconnectDelay(code: number, attempt: number, { min, max }: { min: number; max: number }): number {
  const ceiling = Math.min(max, min * 2 ** attempt);
  return code === 4003 ? 0 // a new token now
    : code === 1001 ? Math.random() * 1_000 // the edge is draining: elsewhere, at once
    : code === 4008 ? Math.max(5_000, ceiling) * (0.5 + Math.random() / 2)
    : min + Math.random() * (ceiling - min);
}
