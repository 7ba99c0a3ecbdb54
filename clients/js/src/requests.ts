import { FerrocastError } from './errors.js';

/** A frame as the edge or the client writes it. */
export type Frame = Record<string, any>;
type Pending = { resolve: (f: Frame) => void; reject: (e: FerrocastError) => void; timer: any };

/** The error an `error` frame stands for. */
export const refusal = (f: Frame) => new FerrocastError(f.code, f.message, f.retry_after, f.data);

/** The table of requests sent and not answered yet, by `ref`. */
export function requests() {
  // A closure rather than a class: its state minifies, which keeps the browser bundle small.
  const pending = new Map<number, Pending>();
  let nextRef = 1;
  return {
    /** Writes `frame` with a new `ref`; resolves with its answer, rejects with an `error`
     * answer or, at `deadline`, with TIMEOUT. */
    send(frame: Frame, deadline: number, write: (frame: Frame) => void): Promise<Frame> {
      const ref = nextRef++;
      return new Promise<Frame>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(ref);
          reject(new FerrocastError('TIMEOUT', `no answer to ${frame.type} in time`));
        }, Math.max(0, deadline - Date.now()));
        pending.set(ref, { resolve, reject, timer });
        write({ ...frame, ref });
      });
    },

    /** Settles the request `frame` answers; false when it answers none. */
    handle(frame: Frame): boolean {
      const request = pending.get(frame.ref);
      if (!request) return false;
      pending.delete(frame.ref);
      clearTimeout(request.timer);
      if (frame.type === 'error') request.reject(refusal(frame));
      else request.resolve(frame);
      return true;
    },

    /** Rejects them all with `error`: a closed connection answers none of them, not even after
     * a reconnect. */
    close(error: FerrocastError): void {
      for (const [ref, request] of pending) {
        clearTimeout(request.timer);
        request.reject(error);
        pending.delete(ref);
      }
    },
  };
}
