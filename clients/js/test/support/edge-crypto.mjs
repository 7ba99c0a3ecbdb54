// The edge's half of payload encryption (protocol part E) written with Node's own `crypto`
// module, independently of the client's WebCrypto code: the fake edge of the unit tests, and
// the reader of raw frames in the end-to-end ones.
import { createECDH, createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

export const INFO = 'ferrocast/v1 aes-256-gcm';
export const EDGE_TO_CLIENT = 1;
export const CLIENT_TO_EDGE = 2;

/** The 12-byte nonce: direction as 4 bytes, then the counter as 8 bytes big-endian. */
export function iv(direction, n) {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(direction, 0);
  nonce.writeBigUInt64BE(BigInt(n), 4);
  return nonce;
}

/** AES-256-GCM: ciphertext then the 16-byte tag. */
export function nodeSeal(key, direction, n, plain) {
  const cipher = createCipheriv('aes-256-gcm', key, iv(direction, n));
  return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/** The plaintext of `sealed`; throws when the tag does not match. */
export function nodeOpen(key, direction, n, sealed) {
  const decipher = createDecipheriv('aes-256-gcm', key, iv(direction, n));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
}

/** The edge's answer to a client's public key (base64): its `encrypt` hello for `welcome`, the
 * AES key, and JSON `enc` frames each way with their own counters. */
export function edgeSession(clientKey) {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const salt = randomBytes(32);
  const secret = ecdh.computeSecret(Buffer.from(clientKey, 'base64'));
  const key = Buffer.from(hkdfSync('sha256', secret, salt, INFO, 32));
  let out = 0;
  let inbound = 0;
  return {
    hello: { key: ecdh.getPublicKey('base64'), salt: salt.toString('base64') },
    key,
    /** `frame` as the edge's next `enc` frame. */
    seal: (frame) => {
      const n = out++;
      return { type: 'enc', n, c: nodeSeal(key, EDGE_TO_CLIENT, n, Buffer.from(JSON.stringify(frame))).toString('base64') };
    },
    /** The frame inside the client's next `enc` frame (checking its counter). */
    open: (enc) => {
      if (enc.type !== 'enc' || enc.n !== inbound) throw new Error(`expected enc frame ${inbound}, got ${JSON.stringify(enc)}`);
      inbound++;
      return JSON.parse(nodeOpen(key, CLIENT_TO_EDGE, enc.n, Buffer.from(enc.c, 'base64')).toString());
    },
  };
}
