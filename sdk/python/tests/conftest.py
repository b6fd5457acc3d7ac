"""A tiny in-process fake of a node's HTTP APIs, scripted per test."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


class Fake:
    """Routes (method, path-without-query) to a function(request) -> (status, body, headers)
    or to a generator of raw chunks for streams. Records every request."""

    def __init__(self) -> None:
        self.routes: Dict[Tuple[str, str], Callable[["Request"], Any]] = {}
        self.requests: List["Request"] = []
        self.lock = threading.Lock()
        handler = self._handler_class()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, path: str) -> Callable[[Callable[["Request"], Any]], Callable[["Request"], Any]]:
        def reg(fn: Callable[["Request"], Any]) -> Callable[["Request"], Any]:
            self.routes[(method, path)] = fn
            return fn

        return reg

    def calls(self, method: str, path: str) -> List["Request"]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def _handler_class(self) -> type:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _do(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                path, _, query = self.path.partition("?")
                req = Request(method, path, query, dict(self.headers.items()), json.loads(raw) if raw else None)
                with fake.lock:
                    fake.requests.append(req)
                fn = fake.routes.get((method, path))
                if fn is None:
                    return self._send(404, {"code": "not_found", "message": path})
                out = fn(req)
                if isinstance(out, Stream):
                    self.send_response(out.status)
                    self.send_header("Content-Type", out.content_type)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for chunk in out.chunks:
                            data = chunk.encode() if isinstance(chunk, str) else chunk
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                            self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                status, body, headers = out if len(out) == 3 else (out[0], out[1], {})
                self._send(status, body, headers)

            def _send(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._do("GET")

            def do_POST(self) -> None:
                self._do("POST")

            def do_DELETE(self) -> None:
                self._do("DELETE")

        return H

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Request:
    def __init__(self, method: str, path: str, query: str, headers: Dict[str, str], body: Any):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body


class Stream:
    def __init__(self, chunks: Any, status: int = 200, content_type: str = "application/x-ndjson"):
        self.chunks, self.status, self.content_type = chunks, status, content_type


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.close()
