"""The Application side: execute tasks on any service of the network, follow events and
executions, manage processes, through a node's Application API (docs/openapi.json)."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse
from typing import Any, Dict, Iterator, List, Mapping, Optional

from ._http import RETRYABLE, ApiError, MesgError, Response, open_stream, request

__all__ = ["Client", "DEFAULT_NODE"]

log = logging.getLogger("mesg")

DEFAULT_NODE = "http://127.0.0.1:50052"


def _query(**params: Any) -> str:
    q = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items() if v is not None}
    return ("?" + urllib.parse.urlencode(q)) if q else ""


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


class Client:
    """A client of one node's Application API.

    `url`: the node's API (default $MESG_NODE, else http://127.0.0.1:50052). `token`: its
    API token (default $MESG_API_TOKEN, else the token a local node wrote into its data
    dir: `data_dir`/api.token, data_dir defaulting to $MESG_DATA_DIR or ~/.mesg).
    Every answer is the API's JSON as dicts and lists; errors raise ApiError.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *, data_dir: Optional[str] = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("MESG_NODE") or DEFAULT_NODE).rstrip("/")
        self.timeout = timeout
        if token is None:
            token = os.environ.get("MESG_API_TOKEN") or None
        if token is None:
            d = data_dir or os.environ.get("MESG_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".mesg")
            try:
                with open(os.path.join(d, "api.token"), encoding="utf-8") as f:
                    token = f.read().strip() or None
            except OSError:
                token = None
        self.token = token

    # ---- plumbing ---------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = -1.0) -> Response:
        resp = request(self.url, method, path, self.token, body, headers, self.timeout if timeout == -1.0 else timeout)
        if resp.status // 100 != 2:
            raise ApiError.from_body(resp.status, resp.body)
        return resp

    def get(self, path: str) -> Any:
        """GET any API path (e.g. "/v1/peers") and return its JSON."""
        return self._call("GET", path).json()

    # ---- node, services, instances ----------------------------------------------------

    def node(self) -> Dict[str, Any]:
        return self.get("/v1/node")

    def services(self) -> List[Dict[str, Any]]:
        return self.get("/v1/services")["services"]

    def service(self, id: str) -> Dict[str, Any]:
        return self.get("/v1/services/" + _quote(id))

    def network_services(self) -> List[Dict[str, Any]]:
        """Services the network runs, with their providers."""
        return self.get("/v1/network/services")["services"]

    def instances(self) -> List[Dict[str, Any]]:
        return self.get("/v1/instances")["instances"]

    def start_instance(self, service: str, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        return self._call("POST", "/v1/instances", {"service": service, "env": dict(env or {})}).json()

    # ---- executions -------------------------------------------------------------------

    def execute(
        self,
        service: str,
        task: str,
        inputs: Optional[Mapping[str, Any]] = None,
        *,
        wait: bool = False,
        wait_ms: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        tags: Optional[List[str]] = None,
        timeout_ms: Optional[int] = None,
        parent: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Execute `task` of `service` (a hash or sid) on whichever node runs it. With
        `wait`, answer when it ends (or after `wait_ms`). With `idempotency_key`, a retry
        with the same key and request answers the same execution instead of running it
        again (on this node or another that saw it); the answer's `replayed` is True then."""
        body: Dict[str, Any] = {"service": service, "task": task, "inputs": dict(inputs or {})}
        if tags:
            body["tags"] = list(tags)
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        if parent is not None:
            body["parent"] = parent
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        http_timeout: Optional[float] = self.timeout
        if wait:
            http_timeout = None if wait_ms is None else max(self.timeout, wait_ms / 1000 + 10)
        resp = self._call("POST", "/v1/executions" + _query(wait=True if wait else None, wait_ms=wait_ms), body, headers, http_timeout)
        execution = resp.json()
        if isinstance(execution, dict):
            execution.setdefault("replayed", resp.headers.get("idempotent-replayed") == "true")
        return execution

    def execution(self, id: str) -> Dict[str, Any]:
        """One execution (with its `diagnosis` while it waits for a provider)."""
        return self.get("/v1/executions/" + _quote(id))

    def wait(self, id: str, timeout_ms: Optional[int] = None) -> Dict[str, Any]:
        """Wait until the execution ends (or `timeout_ms` passes; node default 60 s)."""
        http_timeout = max(self.timeout, (timeout_ms or 60_000) / 1000 + 10)
        return self._call("GET", f"/v1/executions/{_quote(id)}/wait" + _query(timeout_ms=timeout_ms), timeout=http_timeout).json()

    def cancel(self, id: str, reason: Optional[str] = None) -> Dict[str, Any]:
        return self._call("POST", f"/v1/executions/{_quote(id)}/cancel", {"reason": reason} if reason else {}).json()

    def why(self, id: str) -> Dict[str, Any]:
        """Why the execution is not running yet."""
        return self.get(f"/v1/executions/{_quote(id)}/why")

    def executions(self, *, status: Optional[str] = None, service: Optional[str] = None, task: Optional[str] = None, tag: Optional[str] = None, parent: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Executions, newest first (one page of at most `limit`)."""
        q = _query(status=status, service=service, task=task, tag=tag, parent=parent, limit=limit)
        return self.get("/v1/executions" + q)["executions"]

    def follow_executions(self, *, status: Optional[str] = None, service: Optional[str] = None, task: Optional[str] = None, tag: Optional[str] = None, parent: Optional[str] = None, reconnect: bool = True) -> Iterator[Dict[str, Any]]:
        """Every change of a matching execution, as it happens (an endless iterator;
        break out of it to close the stream)."""
        q = _query(status=status, service=service, task=task, tag=tag, parent=parent)
        return self._sse("/v1/executions/stream" + q, "execution", reconnect)

    # ---- events -----------------------------------------------------------------------

    def events(self, *, service: Optional[str] = None, event: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Recent events, newest first."""
        return self.get("/v1/events" + _query(service=service, event=event, limit=limit))["events"]

    def follow_events(self, *, service: Optional[str] = None, event: Optional[str] = None, reconnect: bool = True) -> Iterator[Dict[str, Any]]:
        """Events as they are emitted anywhere in the network (an endless iterator)."""
        return self._sse("/v1/events/stream" + _query(service=service, event=event), "event", reconnect)

    # ---- processes --------------------------------------------------------------------

    def processes(self) -> List[Dict[str, Any]]:
        return self.get("/v1/processes")["processes"]

    def process(self, id: str) -> Dict[str, Any]:
        return self.get("/v1/processes/" + _quote(id))

    def create_process(self, definition: str, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """Create a process from its YAML (docs/processes.md); the same definition twice
        gives the same process."""
        return self._call("POST", "/v1/processes", {"definition": definition, "env": dict(env or {})}).json()

    def validate_process(self, definition: str, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        return self._call("POST", "/v1/processes/validate", {"definition": definition, "env": dict(env or {})}).json()

    def delete_process(self, id: str) -> None:
        self._call("DELETE", "/v1/processes/" + _quote(id))

    def runs(self, process: str) -> List[Dict[str, Any]]:
        return self.get(f"/v1/processes/{_quote(process)}/runs")["runs"]

    def run(self, id: str) -> Dict[str, Any]:
        return self.get("/v1/runs/" + _quote(id))

    # ---- server-sent events -----------------------------------------------------------

    def _sse(self, path: str, name: str, reconnect: bool) -> Iterator[Dict[str, Any]]:
        backoff = 0.1
        while True:
            try:
                stream = open_stream(self.url, path, self.token, "text/event-stream", 60.0)
            except RETRYABLE as e:
                if not reconnect:
                    raise
                log.warning("%s: %s; reconnecting in %.1fs", path, e, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            try:
                event, data = "message", []
                for raw in stream.lines():
                    line = raw.decode("utf-8", "replace")
                    if not line:
                        if data and event == name:
                            yield json.loads("\n".join(data))
                        elif event == "lagged":
                            log.warning("%s: this client fell behind, some items were skipped: %s", path, "\n".join(data))
                        event, data = "message", []
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            event = value
                        elif field == "data":
                            data.append(value)
            except RETRYABLE as e:
                if not reconnect:
                    raise
                log.warning("%s: %s; reconnecting", path, e)
            finally:
                stream.close()
            if not reconnect:
                return
            time.sleep(backoff)
