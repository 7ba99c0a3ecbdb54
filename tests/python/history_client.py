#!/usr/bin/env python3
"""Python `websockets` against a real edge, written from the protocol's text alone: the v1.2
history frames. Publishes 30 numbered messages to room "py", pages back through them with
`history` (10 at a time, `before` the oldest of each page), joins with `rewind` and gets the last
5 then a live one, and checks `welcome` carries `offsets`. Prints "ok" or fails.

Usage: history_client.py WS_URL TOKEN   (the token must allow joining and publishing to "py")
"""

import json
import sys

from websockets.sync.client import connect

url, token = sys.argv[1], sys.argv[2]


def session():
    ws = connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10)
    ws.send(json.dumps({"type": "auth", "token": token}))
    welcome = json.loads(ws.recv(timeout=10))
    assert welcome["type"] == "welcome", welcome
    assert set(welcome["offsets"]) == {"user", "all"}, welcome
    return ws


def answer(ws, ref):
    """The answer to `ref`, skipping pushes."""
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("ref") == ref:
            return frame


with session() as writer:
    writer.send(json.dumps({"type": "join", "room": "py", "ref": 1}))
    assert answer(writer, 1)["type"] == "joined"
    newest = None
    for n in range(30):
        writer.send(json.dumps({"type": "publish", "room": "py", "event": "n",
                                "data": {"n": n}, "echo": False, "ref": 100 + n}))
        ack = answer(writer, 100 + n)
        assert ack["type"] == "ack", ack
        newest = ack["offset"]

with session() as reader:
    got, before, ref = [], None, 10
    while True:
        frame = {"type": "history", "room": "py", "limit": 10, "ref": ref}
        if before is not None:
            frame["before"] = before
        reader.send(json.dumps(frame))
        page = answer(reader, ref)
        assert page["type"] == "history" and page["room"] == "py", page
        assert page["offset"] == newest, page
        numbers = [m["data"]["n"] for m in page["messages"]]
        assert all(m["type"] == "msg" and m["scope"] == "room" for m in page["messages"])
        got = numbers + got
        if not page["more"]:
            break
        before = page["messages"][0]["offset"]
        ref += 1
    assert got == list(range(30)), got

    reader.send(json.dumps({"type": "history", "room": "py", "limit": 500, "ref": 50}))
    refused = answer(reader, 50)
    assert refused["type"] == "error" and refused["code"] == "BAD_FRAME", refused

    reader.send(json.dumps({"type": "join", "room": "py", "rewind": 5, "ref": 60}))
    joined = answer(reader, 60)
    assert joined["type"] == "joined" and joined["offset"] == newest, joined
    rewound = [json.loads(reader.recv(timeout=10)) for _ in range(5)]
    assert [m["data"]["n"] for m in rewound] == [25, 26, 27, 28, 29], rewound

print("ok")
