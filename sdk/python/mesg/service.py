"""The Service side: receive tasks from the node that runs this container, answer them,
emit events (docs/service-api.md)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Union

from ._http import RETRYABLE, ApiError, MesgError, Stream, open_stream, request
from .definition import Definition, find_definition, read_definition

__all__ = ["Service", "Task", "Handler", "DefinitionMismatch"]

log = logging.getLogger("mesg")

ENV_ENDPOINT = "MESG_ENDPOINT"
ENV_TOKEN = "MESG_TOKEN"
ENV_SERVICE_HASH = "MESG_SERVICE_HASH"
ENV_INSTANCE_HASH = "MESG_INSTANCE_HASH"
TASKS_PATH = "/v1/service/tasks"
RESULTS_PATH = "/v1/service/results"
EVENTS_PATH = "/v1/service/events"

# The execution whose handler is running in this thread or coroutine: emit() attaches it.
_current_execution: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("mesg_execution", default=None)


@dataclass
class Task:
    """One task to run: `key` is the task's key in mesg.yml, `inputs` its checked inputs."""

    execution_id: str
    key: str
    inputs: Dict[str, Any] = field(default_factory=dict)


# A handler takes the Task and returns the outputs (a dict; None means {}), or raises to
# fail the execution with the exception's message. `async def` handlers work too.
Handler = Callable[[Task], Union[Optional[Mapping[str, Any]], Awaitable[Optional[Mapping[str, Any]]]]]


class DefinitionMismatch(MesgError):
    """The handlers do not match the tasks the service's mesg.yml declares."""


class Service:
    """A connection to the node that runs this service instance.

    >>> service = Service.from_env()
    >>> @service.task("echo")
    ... def echo(task):
    ...     return task.inputs
    >>> service.listen()   # forever
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        service_hash: str = "",
        instance_hash: str = "",
        *,
        max_concurrency: int = 64,
        definition: Optional[str] = "auto",
        result_retry_for: float = 600.0,
        stream_timeout: float = 60.0,
        max_backoff: float = 5.0,
    ) -> None:
        """`definition`: path of the service's mesg.yml to check the handlers against;
        "auto" looks for mesg.yml in the working directory, then beside the program;
        None skips the check. `stream_timeout`: longest silence on the task stream before
        reconnecting (the node sends a keepalive every 15 s). `result_retry_for`: how long
        results and events are retried while the node is unreachable."""
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.service_hash = service_hash
        self.instance_hash = instance_hash
        self.max_concurrency = max(1, int(max_concurrency))
        self.result_retry_for = result_retry_for
        self.stream_timeout = stream_timeout
        self.max_backoff = max_backoff
        self._handlers: Dict[str, Handler] = {}
        self._definition_path = definition
        self._definition: Optional[Definition] = None
        self._stop = threading.Event()
        self._stream: Optional[Stream] = None
        self._lock = threading.Lock()
        self._running: List[threading.Thread] = []
        self.connected = threading.Event()

    @classmethod
    def from_env(cls, **options: Any) -> "Service":
        """Connect using the variables the node injects into the container."""

        def need(name: str) -> str:
            v = os.environ.get(name)
            if not v:
                raise MesgError(f"environment variable {name} is not set: this program must be started by a mesg node")
            return v

        return cls(
            need(ENV_ENDPOINT),
            need(ENV_TOKEN),
            os.environ.get(ENV_SERVICE_HASH, ""),
            os.environ.get(ENV_INSTANCE_HASH, ""),
            **options,
        )

    # ---- handlers ---------------------------------------------------------------------

    def task(self, key: str) -> Callable[[Handler], Handler]:
        """Decorator: `@service.task("echo")` makes the function the handler of `echo`."""

        def register(fn: Handler) -> Handler:
            self.add_handler(key, fn)
            return fn

        return register

    def add_handler(self, key: str, fn: Handler) -> None:
        if not callable(fn):
            raise TypeError(f"the handler of task `{key}` is not callable")
        self._handlers[key] = fn

    def definition(self) -> Optional[Definition]:
        """The mesg.yml the handlers are checked against, if one was found."""
        if self._definition is None and self._definition_path is not None:
            if self._definition_path == "auto":
                prog = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else os.getcwd()
                path = find_definition([os.getcwd(), prog])
            else:
                path = self._definition_path
                if not os.path.isfile(path):
                    raise DefinitionMismatch(f"{path}: no such file (definition=None skips the check)")
            if path is not None:
                self._definition = read_definition(path)
        return self._definition

    def check_handlers(self) -> None:
        """Raise DefinitionMismatch when a handler has no task in mesg.yml or a task has
        no handler. Does nothing without a mesg.yml (or one this reader cannot read)."""
        d = self.definition()
        if d is None or d.tasks is None:
            return
        declared, handled = set(d.tasks), set(self._handlers)
        problems = []
        extra = sorted(handled - declared)
        missing = sorted(declared - handled)
        if extra:
            problems.append(f"handlers for tasks that {d.path} does not declare: {', '.join(extra)}")
        if missing:
            problems.append(f"tasks of {d.path} without a handler: {', '.join(missing)}")
        if problems:
            raise DefinitionMismatch("; ".join(problems) + f" (declared: {', '.join(sorted(declared)) or 'none'})")

    # ---- the task stream --------------------------------------------------------------

    def listen(self, handlers: Optional[Mapping[str, Handler]] = None) -> None:
        """Receive tasks until stop(), run each in its own thread (at most
        max_concurrency at once; more wait in the stream) and post its result.
        Reconnects with backoff whenever the stream breaks; raises ApiError if the node
        refuses the token (401/403) and DefinitionMismatch before connecting if the
        handlers do not match mesg.yml."""
        for k, fn in (handlers or {}).items():
            self.add_handler(k, fn)
        if not self._handlers:
            raise DefinitionMismatch("no handler: use @service.task(KEY) or listen({KEY: handler})")
        self.check_handlers()
        slots = threading.BoundedSemaphore(self.max_concurrency)
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._stream_once(slots)
                if self._stop.is_set():
                    break
                log.warning("task stream closed by the node; reconnecting")
                backoff = 0.1
            except ApiError as e:
                if e.status in (401, 403):
                    raise
                log.warning("task stream: %s; retrying in %.1fs", e, backoff)
            except (MesgError, *RETRYABLE) as e:  # type: ignore[misc]
                if self._stop.is_set():
                    break
                log.warning("task stream: %s; retrying in %.1fs", e, backoff)
            self.connected.clear()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)
        self.connected.clear()

    def stop(self, wait: bool = True) -> None:
        """Stop listen() (from another thread or a handler); with `wait`, let the
        running handlers post their results first."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.interrupt()
        if wait:
            for t in list(self._running):
                if t is not threading.current_thread():
                    t.join()

    def _stream_once(self, slots: threading.BoundedSemaphore) -> None:
        stream = open_stream(self.endpoint, TASKS_PATH, self.token, "application/x-ndjson", self.stream_timeout)
        with self._lock:
            self._stream = stream
        try:
            if self._stop.is_set():
                return
            for line in stream.lines():
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError as e:
                    raise MesgError(f"the task stream sent a malformed line: {e}") from e
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "ready":
                    log.info("connected to the node; waiting for tasks")
                    self.connected.set()
                elif kind == "keepalive":
                    pass
                elif kind == "task":
                    task = Task(str(msg["execution_id"]), str(msg["task"]), msg.get("inputs") or {})
                    while not slots.acquire(timeout=0.5):
                        if self._stop.is_set():
                            return
                    t = threading.Thread(target=self._run, args=(task, slots), name=f"mesg-task-{task.execution_id[:8]}", daemon=True)
                    with self._lock:
                        self._running = [r for r in self._running if r.is_alive()]
                        self._running.append(t)
                    t.start()
                else:
                    raise MesgError(f"the task stream sent a malformed line: {line[:200]!r}")
        finally:
            with self._lock:
                self._stream = None
            stream.close()

    def _run(self, task: Task, slots: threading.BoundedSemaphore) -> None:
        outputs: Optional[Mapping[str, Any]] = None
        error: Optional[str] = None
        try:
            handler = self._handlers.get(task.key)
            if handler is None:
                raise MesgError(f"this service has no handler for task `{task.key}`")
            ctx = contextvars.copy_context()
            ctx.run(_current_execution.set, task.execution_id)
            result = ctx.run(handler, task)
            if inspect.isawaitable(result):
                result = ctx.run(asyncio.run, _awaited(result))
            if result is not None and not isinstance(result, Mapping):
                raise MesgError(f"the handler of `{task.key}` returned {type(result).__name__}, not a dict of outputs")
            outputs = {} if result is None else result
        except Exception as e:  # a handler's failure fails the execution, not the service
            error = str(e) or type(e).__name__
        finally:
            slots.release()
        try:
            self.submit_result(task.execution_id, outputs=outputs, error=error)
        except Exception as e:
            log.error("result of %s not delivered: %s", task.execution_id, e)

    # ---- results and events -----------------------------------------------------------

    def submit_result(self, execution_id: str, outputs: Optional[Mapping[str, Any]] = None, error: Optional[str] = None) -> None:
        """Post an execution's result: its outputs, or an error. Retried for
        result_retry_for seconds while the node is unreachable or answers 5xx; a refusal
        (unknown, foreign or finished execution, invalid outputs) raises ApiError."""
        body: Dict[str, Any] = {"execution_id": execution_id}
        if error is not None:
            body["error"] = error
        else:
            body["outputs"] = dict(outputs or {})
        self._post_with_retry(RESULTS_PATH, body)

    def emit(self, event: str, data: Optional[Mapping[str, Any]] = None, execution_id: Optional[str] = None) -> None:
        """Emit an event (its data is checked by the node against mesg.yml). Inside a
        handler, the event is attributed to the handler's execution unless
        `execution_id` says otherwise."""
        d = self.definition() if self._definition_path is not None else None
        if d is not None and d.events is not None and event not in d.events:
            raise DefinitionMismatch(f"{d.path} declares no event `{event}` (declared: {', '.join(d.events) or 'none'})")
        body: Dict[str, Any] = {"event": event, "data": dict(data or {})}
        eid = execution_id if execution_id is not None else _current_execution.get()
        if eid is not None:
            body["execution_id"] = eid
        self._post_with_retry(EVENTS_PATH, body)

    def _post_with_retry(self, path: str, body: Dict[str, Any]) -> None:
        deadline = time.monotonic() + self.result_retry_for
        backoff = 0.05
        while True:
            try:
                resp = request(self.endpoint, "POST", path, self.token, body, timeout=30.0)
                if resp.status // 100 == 2:
                    return
                if resp.status < 500:
                    raise ApiError.from_body(resp.status, resp.body)
                reason = f"node answered {resp.status}"
            except RETRYABLE as e:
                reason = str(e) or type(e).__name__
            if time.monotonic() >= deadline:
                raise MesgError(f"{path}: gave up after {self.result_retry_for:g} s: {reason}")
            log.warning("%s: %s; retrying in %.2fs", path, reason, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)


async def _awaited(aw: Awaitable[Any]) -> Any:
    return await aw
