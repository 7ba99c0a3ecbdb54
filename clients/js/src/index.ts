/**
 * The official Ferrocast client for browsers and Node: authentication by `auth` frame, rooms,
 * reconnection with full-jitter backoff, resume without loss or duplicates, token refresh,
 * presence, history, RPC, and requests as promises. No runtime dependencies.
 *
 * ```ts
 * const fc = new Ferrocast('wss://rt.example.com/ws', { getToken: () => fetchToken() });
 * const room = fc.room<{ 'chat.message': { text: string } }>('chat:42');
 * room.on('chat.message', (data) => console.log(data.text));
 * await room.join();
 * await room.publish('chat.message', { text: 'hi' });
 * ```
 *
 * @packageDocumentation
 */
export { Ferrocast } from './client.js';
export type { ClientEvents, Disconnect, State, Welcome } from './client.js';
export { FerrocastError } from './errors.js';
export type { ClientErrorCode, ErrorCode, ServerErrorCode } from './errors.js';
export { Emitter } from './events.js';
export type { Codec, Options, WebSocketLike } from './options.js';
export { Room } from './room.js';
export type { RoomEvents } from './room.js';
export type * from './types.js';
