/**
 * MessagePack frames (`ferrocast.v1.msgpack`), as an option that only applications which import
 * it pay for: `new Ferrocast(url, { codec: msgpack })`. Binary frames are smaller and quicker to
 * read than JSON for numeric data; the messages are the same maps.
 *
 * @packageDocumentation
 */
import type { Codec } from './options.js';

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The MessagePack codec. */
export const msgpack: Codec = {
  protocol: 'ferrocast.v1.msgpack',
  binary: true,
  encode: (frame) => encode(frame),
  decode(data) {
    if (!(data instanceof ArrayBuffer || ArrayBuffer.isView(data))) return undefined;
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    try {
      const frame = decode(bytes);
      return frame && typeof frame === 'object' && !Array.isArray(frame) ? (frame as Record<string, any>) : undefined;
    } catch {
      return undefined;
    }
  },
};

/** `value` as MessagePack: JSON's values (`undefined` members left out, as JSON does), and
 * `Uint8Array` as bin. */
export function encode(value: unknown): Uint8Array {
  const out: number[] = [];
  const bytes = (b: ArrayLike<number>) => {
    for (let i = 0; i < b.length; i++) out.push(b[i]);
  };
  const be = (n: number, size: number) => {
    for (let i = size - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) & 255);
  };
  const head = (n: number, fix: number, fixMax: number, codes: number[]) => {
    if (n <= fixMax) return out.push(fix | n);
    const [c8, c16, c32] = codes;
    if (c8 && n < 256) return out.push(c8, n);
    if (n < 65536) return out.push(c16), be(n, 2);
    out.push(c32), be(n, 4);
  };
  const write = (v: any): void => {
    if (v === null || v === undefined) return void out.push(0xc0);
    if (v === false || v === true) return void out.push(v ? 0xc3 : 0xc2);
    if (typeof v === 'number') {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
        if (v >= 0) {
          if (v < 128) out.push(v);
          else if (v < 256) out.push(0xcc, v);
          else if (v < 65536) out.push(0xcd), be(v, 2);
          else if (v < 2 ** 32) out.push(0xce), be(v, 4);
          else out.push(0xcf), be(v, 8);
        } else if (v >= -32) out.push(v & 255);
        else if (v >= -128) out.push(0xd0, v & 255);
        else if (v >= -32768) out.push(0xd1), be(v + 65536, 2);
        else if (v >= -(2 ** 31)) out.push(0xd2), be(v + 2 ** 32, 4);
        else {
          out.push(0xd3);
          const view = new DataView(new ArrayBuffer(8));
          view.setBigInt64(0, BigInt(v));
          bytes(new Uint8Array(view.buffer));
        }
        return;
      }
      const view = new DataView(new ArrayBuffer(8));
      view.setFloat64(0, v);
      out.push(0xcb);
      return bytes(new Uint8Array(view.buffer));
    }
    if (typeof v === 'string') {
      const b = utf8.encode(v);
      head(b.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
      return bytes(b);
    }
    if (v instanceof Uint8Array) {
      head(v.length, 0, -1, [0xc4, 0xc5, 0xc6]);
      return bytes(v);
    }
    if (Array.isArray(v)) {
      head(v.length, 0x90, 15, [0, 0xdc, 0xdd]);
      return v.forEach((item) => write(item === undefined ? null : item));
    }
    if (typeof v.toJSON === 'function') return write(v.toJSON());
    const entries = Object.entries(v).filter(([, item]) => item !== undefined && typeof item !== 'function');
    head(entries.length, 0x80, 15, [0, 0xde, 0xdf]);
    for (const [key, item] of entries) write(key), write(item);
  };
  write(value);
  return new Uint8Array(out);
}

/** The value MessagePack `bytes` hold (maps as plain objects, bin as `Uint8Array`, 64-bit
 * integers as numbers). */
export function decode(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const take = (n: number) => {
    if (at + n > bytes.length) throw new RangeError('truncated MessagePack');
    at += n;
    return at - n;
  };
  const str = (n: number) => text.decode(bytes.subarray(take(n), at));
  const arr = (n: number) => Array.from({ length: n }, read);
  const map = (n: number) => {
    const o: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = read();
      Object.defineProperty(o, String(key), { value: read(), enumerable: true, writable: true, configurable: true });
    }
    return o;
  };
  function read(): unknown {
    const c = bytes[take(1)];
    if (c < 0x80) return c;
    if (c < 0x90) return map(c & 15);
    if (c < 0xa0) return arr(c & 15);
    if (c < 0xc0) return str(c & 31);
    if (c >= 0xe0) return c - 256;
    switch (c) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bytes.slice(take(bytes[take(1)]), at);
      case 0xc5: return bytes.slice(take(view.getUint16(take(2))), at);
      case 0xc6: return bytes.slice(take(view.getUint32(take(4))), at);
      case 0xca: return view.getFloat32(take(4));
      case 0xcb: return view.getFloat64(take(8));
      case 0xcc: return bytes[take(1)];
      case 0xcd: return view.getUint16(take(2));
      case 0xce: return view.getUint32(take(4));
      case 0xcf: return Number(view.getBigUint64(take(8)));
      case 0xd0: return view.getInt8(take(1));
      case 0xd1: return view.getInt16(take(2));
      case 0xd2: return view.getInt32(take(4));
      case 0xd3: return Number(view.getBigInt64(take(8)));
      case 0xd9: return str(bytes[take(1)]);
      case 0xda: return str(view.getUint16(take(2)));
      case 0xdb: return str(view.getUint32(take(4)));
      case 0xdc: return arr(view.getUint16(take(2)));
      case 0xdd: return arr(view.getUint32(take(4)));
      case 0xde: return map(view.getUint16(take(2)));
      case 0xdf: return map(view.getUint32(take(4)));
    }
    throw new TypeError(`MessagePack type 0x${c.toString(16)} is not one Ferrocast sends`);
  }
  const value = read();
  if (at !== bytes.length) throw new RangeError('trailing bytes after MessagePack value');
  return value;
}
