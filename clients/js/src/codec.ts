import type { Codec } from './options.js';

/** The default codec: text frames of JSON. */
export const json: Codec = {
  protocol: 'ferrocast.v1.json',
  encode: JSON.stringify,
  decode(data) {
    try {
      return typeof data === 'string' ? JSON.parse(data) : undefined;
    } catch {
      return undefined;
    }
  },
};
