"use client";
/**
 * React bindings: one client per provider, rooms joined while a component uses them. Safe under
 * StrictMode's double mount: the socket and the joins are held with a delayed, cancellable
 * release, so mounting twice opens one socket and sends one join. Marked `"use client"` for
 * frameworks with server components (Next.js).
 *
 * ```tsx
 * <FerrocastProvider client={fc}><Chat /></FerrocastProvider>
 * function Chat() {
 *   const state = useConnectionState();
 *   useRoom('chat:42', { 'chat.message': (data) => setLines((l) => [...l, data]) });
 *   const members = usePresence('chat:42');
 * }
 * ```
 *
 * @packageDocumentation
 */
import { createContext, createElement, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { ReactNode } from 'react';
import type { Ferrocast, State } from './client.js';
import type { FerrocastError } from './errors.js';
import type { Room } from './room.js';
import type { Message, PresenceClient, RoomState } from './types.js';

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

type Handlers = Record<string, ((...args: any[]) => void) | undefined>;

/** Subscribes to the events `handlers` names, calling the latest handler of each: handlers may
 * change on every render without re-subscribing, and a new event name subscribes it. */
function useHandlers(subscribe: (event: string, call: (...args: unknown[]) => void) => () => void, handlers: Handlers, key: unknown) {
  const latest = useRef(handlers);
  latest.current = handlers;
  const events = Object.keys(handlers).filter((event) => handlers[event]).sort().join('\n');
  useEffect(() => {
    const stops = events ? events.split('\n').map((event) => subscribe(event, (...args) => latest.current[event]?.(...args))) : [];
    return () => stops.forEach((stop) => stop());
  }, [key, events]);
}

/** Joins `name` while the component is mounted and calls `handlers` (the latest ones: they may
 * change on every render without rejoining; handlers for new events are subscribed). */
export function useRoom<E extends Record<string, unknown> = Record<string, unknown>>(
  name: string,
  handlers: RoomHandlers<E> = {} as RoomHandlers<E>,
): Room<E> {
  const room = useFerrocast().room<E>(name);
  useHandlers((event, call) => (room as Room).on(event, call), handlers as Handlers, room);
  useEffect(() => {
    room.hold();
    return () => room.release();
  }, [room]);
  return room;
}

/** Where the room `name` stands (`joining`, `joined`, `error` with the refusal, or `left`),
 * re-rendering when it changes. It does not join: pair it with `useRoom`. */
export function useRoomState(name: string): { state: RoomState; error: FerrocastError | null } {
  const room = useFerrocast().room(name);
  const state = useSyncExternalStore(
    (changed) => room.on('$state', changed),
    () => room.state,
    () => room.state,
  );
  return { state, error: state === 'error' ? room.error : null };
}

/** Calls `handlers` for messages to this user (by event name), while the component is mounted. */
export function useUserEvents(handlers: Record<string, ((data: any, message: Message) => void) | undefined>): void {
  const client = useFerrocast();
  useHandlers(
    (event, call) => client.on('user', (name, data, message) => name === event && call(data, message)),
    handlers,
    client,
  );
}

/** Who is in the room `name`, keyed by client id: the `presence` answer of every (re)join, kept
 * current by `presence_join` and `presence_leave` pushes. Joins the room while mounted (as
 * `useRoom`); empty until the first answer. */
export function usePresence(name: string): PresenceClient[] {
  const room = useRoom(name);
  const [members, setMembers] = useState<Map<string, PresenceClient>>(() => new Map());
  useEffect(() => {
    // Pushes that arrive before the snapshot are applied on top of it, not lost under it.
    let pushes: [boolean, PresenceClient][] = [];
    let snapshot: Map<string, PresenceClient> | null = null;
    const apply = (map: Map<string, PresenceClient>, [joined, c]: [boolean, PresenceClient]) =>
      joined ? map.set(c.client, c) : map.delete(c.client);
    const push = (joined: boolean) => (c: PresenceClient) => {
      if (!snapshot) return void pushes.push([joined, c]);
      apply(snapshot, [joined, c]);
      setMembers(new Map(snapshot));
    };
    const load = () => {
      snapshot = null;
      pushes = [];
      room.presence().then(
        (clients) => {
          const map = new Map(clients.map((c) => [c.client, c]));
          pushes.forEach((p) => apply(map, p));
          snapshot = map;
          setMembers(new Map(map));
        },
        () => {},
      );
    };
    const stops = [
      room.on('$joined', load),
      room.on('$left', () => setMembers(new Map())),
      room.on('$presence_join', push(true)),
      room.on('$presence_leave', push(false)),
    ];
    if (room.joined) load();
    return () => stops.forEach((stop) => stop());
  }, [room]);
  // The same array until the members change, so it can be an effect's dependency.
  return useMemo(() => [...members.values()], [members]);
}
