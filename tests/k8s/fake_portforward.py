"""pods/portforward over WebSocket for the fake, as the API server and kubelet serve it to the real client's
``kubernetes.stream.portforward``.

Where the behaviour comes from: kubernetes pkg/kubelet/cri/streaming/portforward/websocket.go (one WebSocket per
request, ports from ``?ports=``; per port a data channel 2i and an error channel 2i+1; every binary frame starts with
its channel byte; the first frame on each channel is the port as a little-endian uint16; a failed dial is written as
text on the error channel, then the stream ends) with the subprotocol ``v4.channel.k8s.io`` of
staging/src/k8s.io/apiserver/pkg/util/wsstream/conn.go; RFC 6455 for the framing (client frames masked, server
frames not). The API server answers 404 for a pod that does not exist and 400 for one that is not running (no
container to forward into).

Behind a pod there is no container here: ``fake.port_forwards[(namespace, app, port)] = (host, port)`` names the
real service a test runs where the container of a pod labelled ``app.kubernetes.io/name: <app>`` would listen on
``port``. A pod with no such entry refuses the dial, as a container with nothing on the port does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.k8s.fake_store import ApiError

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
PROTOCOL = "v4.channel.k8s.io"
BINARY, CLOSE, PING, PONG = 0x2, 0x8, 0x9, 0xA


def is_request(handler: BaseHTTPRequestHandler, parts: list[str]) -> bool:
    upgrade = (handler.headers.get("Upgrade") or "").lower() == "websocket"
    path = len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4::2] == ["pods", "portforward"]
    return upgrade and path


def serve(handler: BaseHTTPRequestHandler, fake: Any, parts: list[str], query: dict[str, str]) -> None:
    """Answer one port-forward request on ``handler``'s connection; returns when the stream ends."""
    namespace, pod_name = parts[3], parts[5]
    backend, port = _backend(fake, namespace, pod_name, query)
    offered = [p.strip() for p in (handler.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
    if PROTOCOL not in offered:
        raise ApiError(400, "BadRequest", f"none of the offered subprotocols {offered} is supported")
    accept = base64.b64encode(hashlib.sha1((handler.headers["Sec-WebSocket-Key"] + GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    for name, value in (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)):
        handler.send_header(name, value)
    handler.send_header("Sec-WebSocket-Protocol", PROTOCOL)
    handler.end_headers()
    handler.close_connection = True
    ws, reader = handler.connection, handler.rfile  # reads through rfile: it may hold bytes already buffered
    lock = threading.Lock()
    for channel in (0, 1):
        _send(ws, lock, bytes([channel]) + struct.pack("<H", port))
    try:
        upstream = socket.create_connection(backend, timeout=5) if backend else None
    except OSError as err:
        upstream = None
        reason = str(err)
    else:
        reason = "connect: connection refused"
    if upstream is None:
        _send(ws, lock, b"\x01" + f"error forwarding port {port} to pod {pod_name}: {reason}".encode())
        _send(ws, lock, b"", CLOSE)
        return
    upstream.settimeout(None)
    fake.forwarded.append((namespace, pod_name, port))
    threading.Thread(target=_to_client, args=(upstream, ws, lock), daemon=True).start()
    _from_client(reader, ws, upstream, lock)


def _backend(fake: Any, namespace: str, pod_name: str, query: dict[str, str]) -> tuple[tuple[str, int] | None, int]:
    with fake.store.lock:
        pod = fake.store.find(fake.rtype("v1", "Pod"), namespace, pod_name)
    if pod is None:
        raise ApiError(404, "NotFound", f'pods "{pod_name}" not found')
    if (pod.get("status") or {}).get("phase") != "Running":
        raise ApiError(400, "BadRequest", f"pod {pod_name} is not running")
    if not query.get("ports", "").isdigit():
        raise ApiError(400, "BadRequest", "exactly one port per request in this fake (ports=N)")
    app = ((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name", "")
    port = int(query["ports"])
    return fake.port_forwards.get((namespace, app, port)), port


def _send(ws: socket.socket, lock: threading.Lock, payload: bytes, opcode: int = BINARY) -> None:
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    with lock, contextlib.suppress(OSError):
        ws.sendall(head + payload)


def _read_frame(reader: Any) -> tuple[int, bytes]:
    b0, b1 = _exactly(reader, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", _exactly(reader, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", _exactly(reader, 8))[0]
    if not b1 & 0x80:
        raise ConnectionError("an unmasked client frame: RFC 6455 section 5.1 fails the connection")
    mask = _exactly(reader, 4)
    data = _exactly(reader, n)
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


def _exactly(reader: Any, n: int) -> bytes:
    data = reader.read(n)  # a buffered reader: blocks until n bytes or the end
    if len(data) < n:
        raise ConnectionError("client went away")
    return bytes(data)


def _from_client(reader: Any, ws: socket.socket, upstream: socket.socket, lock: threading.Lock) -> None:
    try:
        while True:
            opcode, data = _read_frame(reader)
            if opcode == CLOSE:
                break
            if opcode == 0:  # a continuation: the client library sends each write as one final frame
                raise ConnectionError("fragmented frames are not modelled by this fake")
            if opcode == PING:
                _send(ws, lock, data, PONG)
            elif opcode == BINARY and data[:1] == b"\x00" and len(data) > 1:
                upstream.sendall(data[1:])
    except OSError:
        pass
    with contextlib.suppress(OSError):
        upstream.shutdown(socket.SHUT_RDWR)
    upstream.close()


def _to_client(upstream: socket.socket, ws: socket.socket, lock: threading.Lock) -> None:
    try:
        while data := upstream.recv(65536):
            _send(ws, lock, b"\x00" + data)
    except OSError:
        pass
    _send(ws, lock, b"", CLOSE)
    with contextlib.suppress(OSError):
        ws.shutdown(socket.SHUT_WR)
