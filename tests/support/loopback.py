"""A stand-in HTTP service on the loopback interface, for clients that must really open a socket.

``serve(handler)`` runs a ``ThreadingHTTPServer`` with ``handler`` on 127.0.0.1 and an unused port in
a thread and yields its base URL (``http://127.0.0.1:PORT``); ``QuietHandler`` keeps request lines
out of the test output.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
