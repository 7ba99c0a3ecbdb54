#!/usr/bin/env python3
"""An encrypting client written from PROTOCOL.md part E alone, with pyca/cryptography (ECDH P-256,
HKDF-SHA256, AES-256-GCM) and Python's `websockets` (JSON encoding), so the contract is checked by
something other than the edge's own code. Runs one scenario against a real edge and prints "ok"
or fails.

Usage: encrypted_client.py WS_URL TOKEN SCENARIO
  room        auth frame with encrypt; join, publish (echoed), receive a plain client's message
  header      Authorization header, then an encrypt frame first; a second encrypt is refused
  late        header auth: encrypt after another frame is refused and the connection stays plain
  plain-enc   an enc frame on a connection without encryption is refused, the connection lives
  bad-key     malformed keys (not base64, compressed, short) close with 1008
  off-curve   a key that is not a point of P-256 closes with 1008
  wrong-tag   a frame with a flipped tag bit closes with 1008
  replayed    the same frame (same counter) twice closes with 1008
  skipped     a counter that skips one closes with 1008
  plaintext   a plain frame after encryption was set up closes with 1008
  required-auth    an auth frame without encrypt closes with 4004
  required-header  a header client whose first frame is not encrypt is closed with 4004
  required-silent  a header client that sends nothing is closed with 4004
  required-ok      a header client that sends encrypt first is served, encrypted
  quiet       an encrypted client that sends nothing for 6 s outlives a 3 s idle timeout: the
              edge's Pings reach it (in the clear) and websockets answers them
"""

import base64
import json
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

url, token, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
ROOM = "py:enc"
INFO = b"ferrocast/v1 aes-256-gcm"
EDGE_TO_CLIENT = bytes([0, 0, 0, 1])
CLIENT_TO_EDGE = bytes([0, 0, 0, 2])


def b64(data):
    return base64.b64encode(data).decode()


class Keys:
    """This side's ephemeral key pair, and the channel once the edge answered."""

    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        assert len(self.public) == 65 and self.public[0] == 4
        self.aes = None
        self.sent = 0
        self.received = 0

    def offer(self):
        return b64(self.public)

    def agree(self, hello):
        edge = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), base64.b64decode(hello["key"]))
        salt = base64.b64decode(hello["salt"])
        assert len(salt) == 32, hello
        shared = self.private.exchange(ec.ECDH(), edge)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO).derive(shared)
        self.aes = AESGCM(key)

    def seal(self, frame, n=None):
        """The enc frame carrying `frame` (a dict, sent as JSON text) as counter n (the next)."""
        if n is None:
            n = self.sent
            self.sent += 1
        plain = json.dumps(frame).encode()
        sealed = self.aes.encrypt(CLIENT_TO_EDGE + n.to_bytes(8, "big"), plain, None)
        return json.dumps({"type": "enc", "n": n, "c": b64(sealed)})

    def open(self, text):
        """The frame an enc frame from the edge carries; its counter must be the next one."""
        outer = json.loads(text)
        assert outer["type"] == "enc" and set(outer) == {"type", "n", "c"}, outer
        assert outer["n"] == self.received, (outer["n"], self.received)
        self.received += 1
        nonce = EDGE_TO_CLIENT + outer["n"].to_bytes(8, "big")
        return json.loads(self.aes.decrypt(nonce, base64.b64decode(outer["c"]), None))


def recv_json(ws):
    return json.loads(ws.recv(timeout=10))


def closed_with(ws, code):
    """Reads until the edge closes; the close code must be `code`."""
    try:
        while True:
            ws.recv(timeout=10)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == code, (closed.rcvd, code)


def open_by_auth(keys, encrypt=None):
    ws = connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10)
    auth = {"type": "auth", "token": token}
    if keys is not None or encrypt is not None:
        auth["encrypt"] = {"key": encrypt if encrypt is not None else keys.offer()}
    ws.send(json.dumps(auth))
    return ws


def open_encrypted():
    keys = Keys()
    ws = open_by_auth(keys)
    welcome = recv_json(ws)
    assert welcome["type"] == "welcome", welcome
    keys.agree(welcome["encrypt"])
    return ws, keys


def open_by_header():
    return connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10,
                   additional_headers={"Authorization": f"Bearer {token}"})


def room():
    ws, keys = open_encrypted()
    ws.send(keys.seal({"type": "join", "room": ROOM, "ref": 1}))
    joined = keys.open(ws.recv(timeout=10))
    assert joined["type"] == "joined" and joined["ref"] == 1, joined
    ws.send(keys.seal({"type": "publish", "room": ROOM, "event": "from.python",
                       "data": {"text": "sealed"}, "ref": 2}))
    got = [keys.open(ws.recv(timeout=10)) for _ in range(2)]
    acks = [f for f in got if f["type"] == "ack"]
    msgs = [f for f in got if f["type"] == "msg"]
    assert len(acks) == 1 and acks[0]["ref"] == 2, got
    assert len(msgs) == 1 and msgs[0]["data"] == {"text": "sealed"}, got
    # The plain member publishes when it sees ours: it reaches this client sealed, in sequence.
    while True:
        frame = keys.open(ws.recv(timeout=10))
        if frame["type"] == "msg" and frame["event"] == "from.rust":
            assert frame["data"] == {"text": "plain"}, frame
            break
    ws.send(keys.seal({"type": "ping", "ref": 3}))
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 3}
    # The frame limit (64 KiB) counts the frame inside: 50 KB of data is over it once in base64.
    ws.send(keys.seal({"type": "publish", "room": ROOM, "event": "large", "echo": False,
                       "data": "y" * 50_000, "ref": 4}))
    ack = keys.open(ws.recv(timeout=10))
    assert ack["type"] == "ack" and ack["ref"] == 4, ack
    ws.close()


def header():
    keys = Keys()
    ws = open_by_header()
    welcome = recv_json(ws)
    assert welcome["type"] == "welcome" and "encrypt" not in welcome, welcome
    ws.send(json.dumps({"type": "encrypt", "key": keys.offer(), "ref": 7}))
    answer = recv_json(ws)
    assert answer["type"] == "encrypt" and answer["ref"] == 7, answer
    keys.agree(answer["encrypt"])
    ws.send(keys.seal({"type": "ping", "ref": 1}))
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 1}
    # encrypt twice: refused, sealed, and the connection goes on.
    ws.send(keys.seal({"type": "encrypt", "key": keys.offer(), "ref": 2}))
    refused = keys.open(ws.recv(timeout=10))
    assert refused["type"] == "error" and refused["code"] == "BAD_FRAME", refused
    assert refused["ref"] == 2 and "already" in refused["message"], refused
    ws.send(keys.seal({"type": "ping", "ref": 3}))
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 3}
    # Plain again: the edge closes.
    ws.send(json.dumps({"type": "ping", "ref": 4}))
    closed_with(ws, 1008)


def late():
    ws = open_by_header()
    assert recv_json(ws)["type"] == "welcome"
    ws.send(json.dumps({"type": "ping", "ref": 1}))
    assert recv_json(ws) == {"type": "pong", "ref": 1}
    ws.send(json.dumps({"type": "encrypt", "key": Keys().offer(), "ref": 2}))
    refused = recv_json(ws)
    assert refused["type"] == "error" and refused["code"] == "BAD_FRAME", refused
    assert refused["ref"] == 2 and "first frame" in refused["message"], refused
    ws.send(json.dumps({"type": "ping", "ref": 3}))
    assert recv_json(ws) == {"type": "pong", "ref": 3}
    ws.close()


def plain_enc():
    ws = open_by_auth(None)
    assert recv_json(ws)["type"] == "welcome"
    ws.send(json.dumps({"type": "enc", "n": 0, "c": b64(b"x" * 32), "ref": 1}))
    refused = recv_json(ws)
    assert refused["type"] == "error" and refused["code"] == "BAD_FRAME", refused
    ws.send(json.dumps({"type": "ping", "ref": 2}))
    assert recv_json(ws) == {"type": "pong", "ref": 2}
    ws.close()


def bad_key():
    keys = Keys()
    compressed = keys.private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    for key in ["not base64!", b64(compressed), b64(keys.public[:64]), ""]:
        closed_with(open_by_auth(None, encrypt=key), 1008)


def off_curve():
    point = bytearray(Keys().public)
    point[64] ^= 1
    closed_with(open_by_auth(None, encrypt=b64(bytes(point))), 1008)


def wrong_tag():
    ws, keys = open_encrypted()
    frame = json.loads(keys.seal({"type": "ping", "ref": 1}))
    sealed = bytearray(base64.b64decode(frame["c"]))
    sealed[-1] ^= 1
    frame["c"] = b64(bytes(sealed))
    ws.send(json.dumps(frame))
    closed_with(ws, 1008)


def replayed():
    ws, keys = open_encrypted()
    frame = keys.seal({"type": "ping", "ref": 1})
    ws.send(frame)
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 1}
    ws.send(frame)
    closed_with(ws, 1008)


def skipped():
    ws, keys = open_encrypted()
    ws.send(keys.seal({"type": "ping", "ref": 1}, n=1))
    closed_with(ws, 1008)


def plaintext():
    ws, keys = open_encrypted()
    ws.send(keys.seal({"type": "ping", "ref": 1}))
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 1}
    ws.send(json.dumps({"type": "ping", "ref": 2}))
    closed_with(ws, 1008)


def required_auth():
    closed_with(open_by_auth(None), 4004)


def required_header():
    ws = open_by_header()
    assert recv_json(ws)["type"] == "welcome"
    ws.send(json.dumps({"type": "ping", "ref": 1}))
    closed_with(ws, 4004)


def required_silent():
    ws = open_by_header()
    assert recv_json(ws)["type"] == "welcome"
    closed_with(ws, 4004)


def required_ok():
    keys = Keys()
    ws = open_by_header()
    assert recv_json(ws)["type"] == "welcome"
    ws.send(json.dumps({"type": "encrypt", "key": keys.offer()}))
    answer = recv_json(ws)
    assert answer["type"] == "encrypt" and "ref" not in answer, answer
    keys.agree(answer["encrypt"])
    ws.send(keys.seal({"type": "ping", "ref": 1}))
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 1}
    ws.close()


def quiet():
    ws, keys = open_encrypted()
    time.sleep(6)
    ws.send(keys.seal({"type": "ping", "ref": 1}))
    assert keys.open(ws.recv(timeout=10)) == {"type": "pong", "ref": 1}
    ws.close()


SCENARIOS = {
    "room": room, "header": header, "late": late, "plain-enc": plain_enc,
    "bad-key": bad_key, "off-curve": off_curve, "wrong-tag": wrong_tag,
    "replayed": replayed, "skipped": skipped, "plaintext": plaintext,
    "required-auth": required_auth, "required-header": required_header,
    "required-silent": required_silent, "required-ok": required_ok, "quiet": quiet,
}

SCENARIOS[scenario]()
print("ok")
