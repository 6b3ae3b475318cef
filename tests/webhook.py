"""A real webhook endpoint on 127.0.0.1 for alert delivery tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POSTed JSON body and its arrival time."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.times: list[float] = []
        self.fail_first = 0
        self.fail_status = 500
        self.always_status: int | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.times.append(time.monotonic())
                    count = len(receiver.bodies)
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.always_status is not None:
                    code = receiver.always_status
                elif count <= receiver.fail_first:
                    code = receiver.fail_status
                else:
                    code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def requests(self) -> int:
        return len(self.bodies)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
