"""HTTP plumbing shared by the Service and Application sides (standard library only)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

__all__ = ["MesgError", "ApiError", "Response", "request", "open_stream", "RETRYABLE"]


class MesgError(Exception):
    """Anything the SDK cannot do: missing environment, a malformed stream, gave up retrying."""


class ApiError(MesgError):
    """The node answered with an error status (its JSON body: code, message, details)."""

    def __init__(self, status: int, code: str, message: str, details: Optional[List[str]] = None):
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details or [])
        text = f"the node refused the request ({status} {code}): {message}"
        if self.details:
            text += "\n  " + "\n  ".join(self.details)
        super().__init__(text)

    @classmethod
    def from_body(cls, status: int, body: bytes) -> "ApiError":
        try:
            v = json.loads(body.decode("utf-8", "replace"))
            if isinstance(v, dict) and "code" in v:
                return cls(status, str(v.get("code")), str(v.get("message", "")), v.get("details") or [])
        except ValueError:
            pass
        return cls(status, "http_" + str(status), body.decode("utf-8", "replace")[:4096])


# Transport failures worth a retry (node restarting, connection reset, timeouts).
RETRYABLE = (OSError, http.client.HTTPException)


class Response:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


def _connection(base: str, timeout: Optional[float]) -> Tuple[http.client.HTTPConnection, str]:
    u = urllib.parse.urlsplit(base)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise MesgError(f"`{base}` is not an http(s) URL")
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, u.port, timeout=timeout)
    return conn, u.path.rstrip("/")


def _headers(token: Optional[str], extra: Optional[Mapping[str, str]], has_body: bool) -> Dict[str, str]:
    h = {"Accept": "application/json", "User-Agent": "mesg-python"}
    if token:
        h["Authorization"] = "Bearer " + token
    if has_body:
        h["Content-Type"] = "application/json"
    if extra:
        h.update(extra)
    return h


def request(
    base: str,
    method: str,
    path: str,
    token: Optional[str],
    body: Any = None,
    headers: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = 30.0,
) -> Response:
    """One request on a fresh connection. Raises a RETRYABLE error on transport failure;
    returns every answer (2xx or not) as a Response."""
    conn, prefix = _connection(base, timeout)
    try:
        data = None if body is None else json.dumps(body).encode("utf-8")
        conn.request(method, prefix + path, body=data, headers=_headers(token, headers, data is not None))
        resp = conn.getresponse()
        payload = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
    finally:
        conn.close()


class Stream:
    """A long-lived response read line by line."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._conn = conn
        self._resp = resp

    def lines(self) -> Iterator[bytes]:
        while True:
            line = self._resp.readline()
            if not line:
                return
            yield line.rstrip(b"\r\n")

    def interrupt(self) -> None:
        """From another thread: make a blocked read return (the reader then closes)."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """From the reading thread."""
        self.interrupt()
        self._resp.close()
        self._conn.close()


def open_stream(
    base: str, path: str, token: Optional[str], accept: str, read_timeout: Optional[float]
) -> Stream:
    """GET a streaming resource. A non-2xx answer raises ApiError; transport failures
    raise a RETRYABLE error. `read_timeout`: longest silence before the read fails."""
    conn, prefix = _connection(base, read_timeout)
    try:
        conn.request("GET", prefix + path, headers=_headers(token, {"Accept": accept}, False))
        resp = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    if resp.status // 100 != 2:
        body = resp.read()
        conn.close()
        raise ApiError.from_body(resp.status, body)
    return Stream(conn, resp)
