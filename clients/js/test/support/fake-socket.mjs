// A WebSocket the test plays the edge for: it opens, answers and closes when the test says,
// so the client's races can be driven step by step, with no network and no timers to wait out.
export class FakeSocket {
  static all = [];
  static get last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    /** Frames the client sent, decoded. */
    this.sent = [];
    /** How many of `sent` the edge has handled (see `next`). */
    this.handled = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.all.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code: 1005, reason: '' }));
  }

  // The edge's side.
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  drop(code = 1006, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The next frame the client sent that the edge has not handled yet. */
  next() {
    return this.handled < this.sent.length ? this.sent[this.handled++] : undefined;
  }

  sentOfType(type) {
    return this.sent.filter((f) => f.type === type);
  }
}

/** Lets the client's promise callbacks and zero-delay timers run. */
export const settle = async (rounds = 3) => {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
};

/** A welcome as the edge sends it. */
export const welcome = (extra = {}) => ({
  type: 'welcome',
  client: `c${FakeSocket.all.length}`,
  user: 'u',
  node: 'n',
  heartbeat: 25_000,
  recovered: { user: false, all: false },
  offsets: { user: null, all: null },
  ...extra,
});

/** An HS256-looking token (unsigned: the fake edge does not check it) expiring at `exp`. */
export const jwt = (exp, sub = 'u') =>
  `e30.${Buffer.from(JSON.stringify({ sub, exp })).toString('base64url')}.sig`;
