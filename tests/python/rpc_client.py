#!/usr/bin/env python3
"""Python `websockets` making `rpc` calls (v1.2) against a real edge, with a worker answering
`rpc.echo` (its data back) and refusing `rpc.fail`; nothing answers `rpc.none`. Checks the reply,
the RPC_ERROR and the TIMEOUT, each matched by `ref`, with several calls in flight at once, and a
call with an `id` retried on a second connection: answered with the first call's reply (the echo
of the first data), so the worker was not called again. Prints "ok" or fails.

Usage: rpc_client.py WS_URL TOKEN   (the edge takes `rpc.*` upstream)
"""

import json
import sys

from websockets.sync.client import connect

url, token = sys.argv[1], sys.argv[2]

with connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10) as ws:
    ws.send(json.dumps({"type": "auth", "token": token}))
    welcome = json.loads(ws.recv(timeout=10))
    assert welcome["type"] == "welcome", welcome

    # All three in flight at once: the answers come back in whatever order, named by ref.
    ws.send(json.dumps({"type": "rpc", "event": "rpc.none", "data": None, "ref": 1,
                        "timeout": 500}))
    ws.send(json.dumps({"type": "rpc", "event": "rpc.echo", "data": {"x": [1, "two"]},
                        "ref": 2}))
    ws.send(json.dumps({"type": "rpc", "event": "rpc.fail", "data": "abc", "ref": 3}))
    answers = {}
    while len(answers) < 3:
        frame = json.loads(ws.recv(timeout=10))
        assert "ref" in frame, frame
        answers[frame["ref"]] = frame

    assert answers[1]["type"] == "error" and answers[1]["code"] == "TIMEOUT", answers[1]
    assert answers[2] == {"type": "reply", "ref": 2, "data": {"x": [1, "two"]}}, answers[2]
    refused = answers[3]
    assert refused["type"] == "error" and refused["code"] == "RPC_ERROR", refused
    assert refused["message"] == "refused by the worker", refused
    assert refused["data"] == {"why": 5}, refused

    # No ref: refused as a bad frame, and the connection stays usable.
    ws.send(json.dumps({"type": "rpc", "event": "rpc.echo", "data": 1}))
    bad = json.loads(ws.recv(timeout=10))
    assert bad["type"] == "error" and bad["code"] == "BAD_FRAME" and "ref" not in bad, bad
    ws.send(json.dumps({"type": "rpc", "event": "rpc.echo", "data": 7, "ref": 4}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "reply", "ref": 4, "data": 7}

    ws.send(json.dumps({"type": "rpc", "event": "rpc.echo", "data": {"try": 1}, "ref": 5,
                        "id": "py-call-1"}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "reply", "ref": 5, "data": {"try": 1}}

# The same call again from another connection, as after a lost answer: the first reply, again.
with connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10) as ws:
    ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
    ws.send(json.dumps({"type": "rpc", "event": "rpc.echo", "data": {"try": 2}, "ref": 1,
                        "id": "py-call-1"}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "reply", "ref": 1, "data": {"try": 1}}

print("ok")
