/** Follows the page, where there is one: `wake` when it may have lost its connection unseen or
 * can use one again (back online, visible, resumed after being frozen, shown from the back/forward
 * cache); `sleep` when a connection is useless or in the way (offline; hidden into the
 * back/forward cache, which a page with an open WebSocket cannot enter). Returns a function
 * that stops following. */
export function followPage(wake: () => void, sleep: (why: string) => void): () => void {
  const w = globalThis as any;
  const doc = w.document;
  if (!w.addEventListener || !doc) return () => {};
  const listeners: [any, string, (event: any) => void][] = [
    [w, 'online', wake],
    [w, 'offline', () => sleep('offline')],
    [w, 'pageshow', (e) => e.persisted && wake()],
    [w, 'pagehide', (e) => e.persisted && sleep('pagehide')],
    [doc, 'visibilitychange', () => doc.visibilityState === 'visible' && wake()],
    [doc, 'resume', wake],
  ];
  for (const [target, name, listener] of listeners) target.addEventListener(name, listener);
  return () => {
    for (const [target, name, listener] of listeners) target.removeEventListener(name, listener);
  };
}
