// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyHandler = (...args: any[]) => void;

/** A minimal typed event emitter (no dependency, works in browsers and Node): the base of
 * `Ferrocast` and `Room`, whose `on` and `off` it provides. A handler that throws does not keep
 * the others from running; its error is rethrown asynchronously. */
export class Emitter<M extends { [K in keyof M]: unknown[] }> {
  private handlers = new Map<PropertyKey, Set<AnyHandler>>();

  /** Calls `handler` on every `event`; returns a function that stops it. */
  on<K extends keyof M>(event: K, handler: (...args: M[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler as AnyHandler);
    return () => this.off(event, handler);
  }

  /** Stops calling `handler` on `event`. */
  off<K extends keyof M>(event: K, handler: (...args: M[K]) => void): void {
    this.handlers.get(event)?.delete(handler as AnyHandler);
  }

  protected emit<K extends keyof M>(event: K, ...args: M[K]): void {
    this.fire(event, ...args);
  }

  /** Calls the handlers of `event`, whatever its type. */
  protected fire(event: PropertyKey, ...args: unknown[]): void {
    for (const handler of [...(this.handlers.get(event) ?? [])]) {
      try {
        handler(...args);
      } catch (error) {
        // One failing handler must not keep the others (or the connection) from working.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
