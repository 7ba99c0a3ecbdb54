/** How long a ping of ours may go unanswered, in wall-clock ms, before the connection is
 * judged dead. */
export const PONG_MS = 10_000;

/**
 * A connection's liveness, judged by wall-clock time and traffic, not by timer ticks: a hidden
 * tab's timers may fire a minute late (Chrome's intensive throttling), a frozen page's not at
 * all, so a late tick says nothing about the server. Only a ping of ours that went unanswered
 * for PONG_MS does.
 */
export function liveness(ping: () => void, dead: () => void) {
  // A closure rather than a class: its state minifies, which keeps the browser bundle small.
  let heard = Date.now();
  let pinged = 0;
  const send = () => {
    pinged = Date.now();
    ping();
  };
  return {
    /** Something arrived. */
    heard(): void {
      heard = Date.now();
    },
    /** A timer's tick, however late: pings after `quiet` ms of silence, and calls `dead` once a
     * ping has waited PONG_MS for an answer. */
    tick(quiet: number): void {
      const now = Date.now();
      if (pinged > heard) {
        if (now - pinged > PONG_MS) dead();
      } else if (now - heard > quiet) send();
    },
    /** Checks at once (the page may have slept): pings unless a ping already waits. */
    check(): void {
      if (pinged <= heard) send();
    },
  };
}
