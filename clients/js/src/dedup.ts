import type { Message } from './types.js';

/** Message ids remembered per scope, to drop a message seen twice across a reconnect. */
const SEEN = 512;

/** A filter that lets each message through once. Resuming from an offset after a reconnect can
 * bring again what the previous connection delivered just before it broke. */
export function dedup(): (msg: Message) => boolean {
  // A closure rather than a class: its state minifies, which keeps the browser bundle small.
  const seen = new Map<string, Set<string>>();
  return (msg) => {
    const key = msg.scope === 'room' ? `room:${msg.room}` : msg.scope;
    let ids = seen.get(key);
    if (!ids) seen.set(key, (ids = new Set()));
    if (ids.has(msg.id)) return false;
    ids.add(msg.id);
    if (ids.size > SEEN) ids.delete(ids.values().next().value!);
    return true;
  };
}
