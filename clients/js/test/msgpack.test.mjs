// The MessagePack codec on its own: any JSON value survives a round trip, in the smallest
// encoding for each integer; what the edge never sends is refused rather than misread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode, decode, msgpack } from '../dist/esm/msgpack.js';

test('any JSON value round-trips', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      // JSON has one zero: -0 is written as 0, as JSON.stringify does.
      const plain = JSON.parse(JSON.stringify(value));
      assert.deepEqual(decode(encode(plain)), plain);
    }),
    { numRuns: 2_000 },
  );
});

test('integers take their smallest format; lengths at each boundary', () => {
  const cases = [
    [0, [0x00]], [127, [0x7f]], [128, [0xcc, 0x80]], [255, [0xcc, 0xff]], [256, [0xcd, 1, 0]],
    [65536, [0xce, 0, 1, 0, 0]], [-1, [0xff]], [-32, [0xe0]], [-33, [0xd0, 0xdf]],
    [-129, [0xd1, 0xff, 0x7f]], [2 ** 32, [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]], [0.5, [0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]],
  ];
  for (const [value, bytes] of cases) assert.deepEqual([...encode(value)], bytes, `${value}`);
  for (const n of [31, 32, 255, 256, 65535, 65536]) {
    const s = 'x'.repeat(n);
    assert.equal(decode(encode(s)), s);
    const list = Array(n).fill(1);
    assert.deepEqual(decode(encode(list)), list);
  }
  assert.equal(decode(encode(-(2 ** 40))), -(2 ** 40));
});

test('the codec reads binary frames only, and no prototype keys', () => {
  assert.equal(msgpack.decode('{"type":"welcome"}'), undefined);
  assert.equal(msgpack.decode(new Uint8Array([0xc1]).buffer), undefined, 'never-used byte');
  assert.equal(msgpack.decode(new Uint8Array([0x92, 1]).buffer), undefined, 'truncated');
  const frame = msgpack.decode(encode({ type: 'msg', __proto__x: 1, data: { ['__proto__']: { polluted: true } } }));
  assert.equal(frame.type, 'msg');
  assert.equal({}.polluted, undefined);
  assert.deepEqual(msgpack.decode(Buffer.from(encode({ a: 1 }))), { a: 1 }, 'a Node Buffer');
});
