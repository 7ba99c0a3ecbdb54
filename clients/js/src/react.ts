/**
 * React bindings: one client per provider, rooms joined while a component uses them. Safe under
 * StrictMode's double mount: the socket and the joins are held with a delayed, cancellable
 * release, so mounting twice opens one socket and sends one join.
 *
 * ```tsx
 * <FerrocastProvider client={fc}><Chat /></FerrocastProvider>
 * function Chat() {
 *   const state = useConnectionState();
 *   useRoom('chat:42', { 'chat.message': (data) => setLines((l) => [...l, data]) });
 * }
 * ```
 */
import { createContext, createElement, useContext, useEffect, useRef, useSyncExternalStore } from 'react';
import type { ReactNode } from 'react';
import type { Ferrocast, State } from './index.js';
import type { Room } from './room.js';
import type { Message } from './types.js';

const Context = createContext<Ferrocast | null>(null);

/** Makes `client` available below, connected while the provider is mounted. */
export function FerrocastProvider(props: { client: Ferrocast; children?: ReactNode }) {
  const { client } = props;
  useEffect(() => {
    client.hold();
    return () => client.release();
  }, [client]);
  return createElement(Context.Provider, { value: client }, props.children);
}

/** The provider's client. */
export function useFerrocast(): Ferrocast {
  const client = useContext(Context);
  if (!client) throw new Error('useFerrocast needs a <FerrocastProvider>');
  return client;
}

/** The connection's state, re-rendering when it changes. */
export function useConnectionState(): State {
  const client = useFerrocast();
  return useSyncExternalStore(
    (changed) => client.on('state', changed),
    () => client.state,
    () => client.state,
  );
}

/** Handlers by event name (the application's, or the room's own `$joined`, `$gap`, ...). */
export type RoomHandlers<E> = {
  [K in keyof E & string]?: (data: E[K], message: Message<E[K]>) => void;
} & { [event: `$${string}`]: ((arg: any) => void) | undefined };

/** Joins `name` while the component is mounted and calls `handlers` (the latest ones: they may
 * change on every render without rejoining). */
export function useRoom<E extends Record<string, unknown> = Record<string, unknown>>(
  name: string,
  handlers: RoomHandlers<E> = {} as RoomHandlers<E>,
): Room<E> {
  const client = useFerrocast();
  const room = client.room<E>(name);
  const latest = useRef(handlers);
  latest.current = handlers;
  useEffect(() => {
    const events = Object.keys(latest.current);
    const stops = events.map((event) =>
      (room.on as (e: string, h: (...a: unknown[]) => void) => () => void)(event, (...args) =>
        (latest.current as Record<string, ((...a: unknown[]) => void) | undefined>)[event]?.(...args),
      ),
    );
    room.hold();
    return () => {
      stops.forEach((stop) => stop());
      room.release();
    };
  }, [room]);
  return room;
}
