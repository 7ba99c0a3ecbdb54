#!/usr/bin/env python3
"""Python `websockets` against a real edge, written from the protocol's text alone: client-chosen
ids (v1.2). A `publish` and a `send`, each retried with the same `id` on a new connection as a
client does after losing its answer, get the first answer again; a member of the room receives
the message once. Prints "ok" or fails.

Usage: request_ids_client.py WS_URL TOKEN   (the token must allow joining and publishing to
"py", and the edge must take the event "chat.say" upstream)
"""

import json
import sys

from websockets.sync.client import connect

url, token = sys.argv[1], sys.argv[2]


def session():
    ws = connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10)
    ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
    return ws


def request(ws, frame, ref):
    frame["ref"] = ref
    ws.send(json.dumps(frame))
    while True:
        answer = json.loads(ws.recv(timeout=10))
        if answer.get("ref") == ref:
            return answer


publish = {"type": "publish", "room": "py", "event": "say", "data": {"text": "hi"},
           "echo": False, "id": "py-publish-1"}
send = {"type": "send", "event": "chat.say", "data": {"text": "hi"}, "id": "py-send-1"}

member = session()
assert request(member, {"type": "join", "room": "py"}, 1)["type"] == "joined"

answers = []
for attempt in range(2):
    with session() as ws:
        assert request(ws, {"type": "join", "room": "py"}, 1)["type"] == "joined"
        published = request(ws, dict(publish), 2)
        sent = request(ws, dict(send), 3)
        assert published["type"] == "ack" and sent["type"] == "ack", (published, sent)
        answers.append((published["offset"], sent["id"]))
assert answers[0] == answers[1], answers

first = json.loads(member.recv(timeout=10))
assert first["type"] == "msg" and first["offset"] == answers[0][0], first
member.send(json.dumps({"type": "ping", "ref": 9}))
after = json.loads(member.recv(timeout=10))
assert after == {"type": "pong", "ref": 9}, f"the retry was delivered again: {after}"
member.close()

with session() as ws:
    bad = request(ws, dict(publish, id="not ok"), 4)
    assert bad["type"] == "error" and bad["code"] == "BAD_FRAME", bad

print("ok")
