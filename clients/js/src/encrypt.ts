/**
 * Payload encryption per connection (protocol v1.2, part E), as an option that only applications
 * which import it pay for: `new Ferrocast(url, { getToken, encrypt })`. WebCrypto only (browsers,
 * Node 20 and later): an ephemeral ECDH P-256 key pair per connection, HKDF-SHA256 to one
 * AES-256-GCM key, and every frame after `welcome` sealed both ways in `enc` frames. Rooms,
 * presence, history and RPC work as without it. A connection whose edge does not answer the
 * key (an edge without encryption) is closed with 4004 and the client stops: it never falls back
 * to plain frames.
 *
 * ```ts
 * import { Ferrocast } from '@ferrocast/client';
 * import { encrypt } from '@ferrocast/client/encrypt';
 * const fc = new Ferrocast(url, { getToken, encrypt });
 * ```
 *
 * @packageDocumentation
 */
import type { Codec, WebSocketLike } from './options.js';

/** Nonce direction of frames from the edge to the client. */
export const EDGE_TO_CLIENT = 1;
/** Nonce direction of frames from the client to the edge. */
export const CLIENT_TO_EDGE = 2;

const utf8 = new TextEncoder();
const text = new TextDecoder();
const subtle = () => globalThis.crypto.subtle;
const ECDH = { name: 'ECDH', namedCurve: 'P-256' };
const INFO = utf8.encode('ferrocast/v1 aes-256-gcm');

/** Bytes as standard base64, padded (keys, salts and JSON `c`). */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** Base64 (padded or not) as bytes. */
export function fromBase64(base64: string): Uint8Array {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** The 12-byte nonce of frame `n` in `direction`: 4 bytes of direction, then `n` as 8 bytes
 * big-endian. */
export function nonce(direction: number, n: number): Uint8Array {
  const iv = new Uint8Array(12);
  const view = new DataView(iv.buffer);
  view.setUint32(0, direction);
  view.setUint32(4, Math.floor(n / 2 ** 32));
  view.setUint32(8, n >>> 0);
  return iv;
}

/** Frame `n`'s bytes sealed with AES-256-GCM under `key`: the ciphertext, then the 16-byte tag. */
export async function seal(key: CryptoKey, direction: number, n: number, plain: BufferSource): Promise<Uint8Array> {
  return new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv: nonce(direction, n) as BufferSource }, key, plain));
}

/** A sealed frame's bytes; rejects when it does not decrypt (another key, nonce or a bad tag). */
export async function unseal(key: CryptoKey, direction: number, n: number, sealed: BufferSource): Promise<Uint8Array> {
  return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: nonce(direction, n) as BufferSource }, key, sealed));
}

/** The connection's AES-256-GCM key: ECDH of our private key with the edge's public key (an
 * uncompressed P-256 point), then HKDF-SHA256 with the edge's salt and the protocol's info. */
export async function agree(privateKey: CryptoKey, edgeKey: BufferSource, salt: BufferSource): Promise<CryptoKey> {
  const crypto = subtle();
  const edge = await crypto.importKey('raw', edgeKey, ECDH, false, []);
  const secret = await crypto.deriveBits({ name: 'ECDH', public: edge }, privateKey, 256);
  const hkdf = await crypto.importKey('raw', secret, 'HKDF', false, ['deriveKey']);
  return crypto.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt, info: INFO }, hkdf, { name: 'AES-GCM', length: 256 }, false, [
    'encrypt',
    'decrypt',
  ]);
}

/**
 * Encrypts a connection: pass it as the client's `encrypt` option. The client calls it with each
 * new WebSocket and its codec, and talks through what it returns: the `auth` frame goes out with
 * this connection's public key, `welcome` (in the clear) brings the edge's key and salt, and
 * every later frame is sealed and opened here, in order, so the client sees the frames it would
 * see without encryption. A `welcome` without the edge's half closes the connection with 4004
 * (the client stops); a frame that does not open, or out of sequence, with 1008 (it reconnects).
 * Throws where there is no WebCrypto (a browser page served over plain http from another host).
 */
export function encrypt(socket: WebSocketLike, codec: Codec): WebSocketLike {
  if (!globalThis.crypto?.subtle) throw new Error('no WebCrypto (crypto.subtle): browsers have it on https pages and localhost only');
  const pair = subtle().generateKey(ECDH, false, ['deriveBits']) as Promise<CryptoKeyPair>;
  let setKey!: (key: CryptoKey) => void;
  const key = new Promise<CryptoKey>((resolve) => (setKey = resolve));
  let keyed = false;
  let dead = false;
  let first = true;
  let sent = 0;
  let received = 0;
  // Frames go through one queue each way, so that counters follow the order frames are sent
  // and received, whatever order WebCrypto's promises settle in.
  let out: Promise<unknown> = Promise.resolve();
  let inbound: Promise<unknown> = Promise.resolve();
  const write = (frame: Record<string, unknown>) => !dead && socket.readyState === 1 && socket.send(codec.encode(frame));

  const fail = (code: number, reason: string) => {
    if (dead) return;
    dead = true;
    socket.onmessage = socket.onclose = null;
    try {
      socket.close(1000, reason);
    } catch {
      // Already closing.
    }
    wrapper.onclose?.({ code, reason });
  };

  const wrapper: WebSocketLike = {
    get readyState() {
      return dead ? 3 : socket.readyState;
    },
    onopen: null,
    onmessage: null,
    onclose: null,
    onerror: null,
    send(data) {
      const auth = first;
      first = false;
      out = out.then(async () => {
        if (auth) {
          // The auth frame, in the clear, with this connection's public key.
          const raw = new Uint8Array(await subtle().exportKey('raw', (await pair).publicKey));
          return write({ ...codec.decode(data), encrypt: { key: toBase64(raw) } });
        }
        const n = sent++;
        const c = await seal(await key, CLIENT_TO_EDGE, n, typeof data === 'string' ? utf8.encode(data) : (data as BufferSource));
        write({ type: 'enc', n, c: codec.binary ? c : toBase64(c) });
      });
    },
    close(code, reason) {
      dead = true;
      socket.close(code, reason);
    },
  };

  socket.onopen = (event) => wrapper.onopen?.(event);
  socket.onerror = (event) => wrapper.onerror?.(event);
  socket.onclose = (event) => {
    dead = true;
    wrapper.onclose?.(event);
  };
  socket.onmessage = ({ data }) => {
    inbound = inbound.then(async () => {
      if (dead) return;
      const frame = codec.decode(data);
      if (!keyed) {
        const hello = frame?.type === 'welcome' && frame.encrypt;
        if (!hello) return fail(4004, 'the edge did not set encryption up');
        try {
          setKey(await agree((await pair).privateKey, fromBase64(hello.key) as BufferSource, fromBase64(hello.salt) as BufferSource));
        } catch {
          return fail(1008, "the edge's encryption key is not a P-256 point");
        }
        keyed = true;
        return wrapper.onmessage?.({ data });
      }
      if (frame?.type !== 'enc' || frame.n !== received) return fail(1008, 'a frame out of sequence or in the clear');
      let plain: Uint8Array;
      try {
        plain = await unseal(await key, EDGE_TO_CLIENT, received++, (typeof frame.c === 'string' ? fromBase64(frame.c) : frame.c) as BufferSource);
      } catch {
        return fail(1008, 'a frame did not decrypt');
      }
      if (!dead) wrapper.onmessage?.({ data: codec.binary ? plain : text.decode(plain) });
    });
  };
  return wrapper;
}
