#!/usr/bin/env python3
"""Python `websockets` against a real edge, as its users run it: permessage-deflate is offered by
default. Joins a room, publishes a large message into it (compressed by this client, inflated by
the edge) and reads it back (compressed by the edge, inflated here). Prints "ok" or fails.

Usage: deflate_client.py WS_URL TOKEN   (the token must allow joining and publishing to "z")
"""

import json
import sys

from websockets.extensions import permessage_deflate
from websockets.sync.client import connect

url, token = sys.argv[1], sys.argv[2]

# Count the frames the edge sent compressed (RSV1 set): the library inflates them transparently.
compressed_frames = 0
_decode = permessage_deflate.PerMessageDeflate.decode


def counting_decode(self, frame, *args, **kwargs):
    global compressed_frames
    if frame.rsv1:
        compressed_frames += 1
    return _decode(self, frame, *args, **kwargs)


permessage_deflate.PerMessageDeflate.decode = counting_decode

with connect(url, subprotocols=["ferrocast.v1.json"], open_timeout=10) as ws:
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    assert "permessage-deflate" in extensions, f"not negotiated: {extensions!r}"

    def expect(kind):
        while True:
            frame = json.loads(ws.recv(timeout=10))
            if frame.get("type") == kind:
                return frame
            assert frame.get("type") != "error", frame

    ws.send(json.dumps({"type": "auth", "token": token}))
    expect("welcome")
    ws.send(json.dumps({"type": "join", "room": "z", "ref": 1}))
    expect("joined")
    text = "compressible " * 400
    ws.send(json.dumps({"type": "publish", "room": "z", "event": "big",
                        "data": {"text": text}, "ref": 2}))
    message = expect("msg")
    assert message["data"]["text"] == text, "the message came back changed"
    assert compressed_frames >= 1, "the edge sent nothing compressed"

print("ok")
