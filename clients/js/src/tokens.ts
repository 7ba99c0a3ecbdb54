import { expOf } from './jwt.js';

/** Tokens for connections and refreshes: one `getToken` call at a time, and a token reused until
 * it is within `lead()` seconds of its `exp` (a token without `exp` until the edge refuses it).
 * Without this, every reconnect of a drained edge's clients would hit the token endpoint at once. */
export function tokenSource(getToken: () => string | Promise<string>, lead: () => number) {
  let token: string | undefined;
  let fetching: Promise<string> | undefined;
  return {
    /** The current token, or a new one when it is near its `exp`, dropped, or `renew` asks. */
    get(renew = false): Promise<string> {
      const exp = token === undefined ? 0 : expOf(token);
      if (!renew && token !== undefined && (exp === undefined || exp * 1000 - Date.now() > lead() * 1000)) {
        return Promise.resolve(token);
      }
      return (fetching ??= Promise.resolve()
        .then(getToken)
        .then((t) => (token = t))
        .finally(() => (fetching = undefined)));
    },
    /** Never hands out the current token again (the edge refused it, or it expired). */
    drop(): void {
      token = undefined;
    },
  };
}
