import asyncio
import json
import threading
import time

import pytest
from conftest import Stream

from mesg import ApiError, DefinitionMismatch, MesgError, Service
from mesg.definition import section_keys


def line(v):
    return json.dumps(v) + "\n"


def task_stream(tasks, hold: threading.Event):
    """ready, the tasks, then keep the stream open until `hold` is set."""

    def gen():
        yield line({"type": "ready", "service_hash": "S", "instance_hash": "I"})
        for t in tasks:
            yield line({"type": "task", **t})
        while not hold.wait(0.05):
            yield line({"type": "keepalive"})

    return gen()


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def run_in_thread(service, **kw):
    errors = []

    def go():
        try:
            service.listen(**kw)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, errors


def make(fake, **kw):
    kw.setdefault("definition", None)
    kw.setdefault("max_backoff", 0.2)
    return Service(fake.url, "tok", "S", "I", **kw)


def test_tasks_go_to_their_handlers_and_results_are_posted(fake):
    hold = threading.Event()
    tasks = [
        {"execution_id": "e1", "task": "echo", "inputs": {"message": "hi"}},
        {"execution_id": "e2", "task": "fail", "inputs": {}},
        {"execution_id": "e3", "task": "nope", "inputs": {}},
        {"execution_id": "e4", "task": "aecho", "inputs": {"n": 1}},
        {"execution_id": "e5", "task": "list", "inputs": {}},
    ]
    fake.route("GET", "/v1/service/tasks")(lambda r: Stream(task_stream(tasks, hold)))
    fake.route("POST", "/v1/service/results")(lambda r: (200, {}))
    fake.route("POST", "/v1/service/events")(lambda r: (200, {}))
    s = make(fake)

    @s.task("echo")
    def echo(task):
        s.emit("echoed", {"m": task.inputs["message"]})
        return task.inputs

    @s.task("fail")
    def fail(task):
        raise ValueError("bad input")

    async def aecho(task):
        await asyncio.sleep(0.01)
        s.emit("echoed", {"m": "async"})
        return {"n": task.inputs["n"] + 1}

    t, errors = run_in_thread(s, handlers={"aecho": aecho, "list": lambda task: [1]})
    wait_for(lambda: len(fake.calls("POST", "/v1/service/results")) == 5)
    s.stop()
    hold.set()
    t.join(5)
    assert not errors
    results = {r.body["execution_id"]: r.body for r in fake.calls("POST", "/v1/service/results")}
    assert results["e1"] == {"execution_id": "e1", "outputs": {"message": "hi"}}
    assert results["e2"] == {"execution_id": "e2", "error": "bad input"}
    assert "no handler for task `nope`" in results["e3"]["error"]
    assert results["e4"]["outputs"] == {"n": 2}
    assert "not a dict" in results["e5"]["error"]
    # Every call carries the instance token; events emitted in a handler carry its execution.
    assert all(r.headers["Authorization"] == "Bearer tok" for r in fake.requests)
    events = sorted((r.body["execution_id"], r.body["data"]["m"]) for r in fake.calls("POST", "/v1/service/events"))
    assert events == [("e1", "hi"), ("e4", "async")]


def test_emit_outside_a_handler_has_no_execution_unless_given(fake):
    fake.route("POST", "/v1/service/events")(lambda r: (200, {}))
    s = make(fake)
    s.emit("tick", {"count": 1})
    s.emit("tick", {"count": 2}, execution_id="abc")
    bodies = [r.body for r in fake.calls("POST", "/v1/service/events")]
    assert bodies == [{"event": "tick", "data": {"count": 1}}, {"event": "tick", "data": {"count": 2}, "execution_id": "abc"}]


def test_reconnects_with_backoff_after_errors_and_closed_streams(fake):
    hold = threading.Event()
    attempts = []

    @fake.route("GET", "/v1/service/tasks")
    def tasks(r):
        attempts.append(time.monotonic())
        n = len(attempts)
        if n == 1:
            return (503, {"code": "unavailable", "message": "starting"})
        if n == 2:  # closes right after ready: the node restarted
            return Stream(iter([line({"type": "ready", "service_hash": "S", "instance_hash": "I"})]))
        if n == 3:
            return Stream(iter(["{not json\n"]))
        return Stream(task_stream([{"execution_id": "e9", "task": "echo", "inputs": {}}], hold))

    fake.route("POST", "/v1/service/results")(lambda r: (200, {}))
    s = make(fake)
    s.add_handler("echo", lambda t: {"ok": True})
    t, errors = run_in_thread(s)
    wait_for(lambda: fake.calls("POST", "/v1/service/results"))
    assert s.connected.is_set()
    s.stop()
    hold.set()
    t.join(5)
    assert not errors and len(attempts) == 4
    assert attempts[1] - attempts[0] >= 0.09  # backoff between attempts


def test_a_refused_token_ends_listen(fake):
    fake.route("GET", "/v1/service/tasks")(lambda r: (401, {"code": "unauthorized", "message": "bad token"}))
    s = make(fake)
    s.add_handler("echo", lambda t: {})
    with pytest.raises(ApiError) as e:
        s.listen()
    assert e.value.status == 401 and e.value.code == "unauthorized"


def test_results_are_retried_while_the_node_fails_and_refusals_are_final(fake):
    answers = [(503, {"code": "x", "message": "restarting"}), (502, {"code": "x", "message": "gateway"}), (200, {})]
    fake.route("POST", "/v1/service/results")(lambda r: answers.pop(0))
    s = make(fake)
    s.submit_result("e1", outputs={"a": 1})
    assert len(fake.calls("POST", "/v1/service/results")) == 3

    fake.route("POST", "/v1/service/results")(lambda r: (409, {"code": "execution_finished", "message": "timed out"}))
    with pytest.raises(ApiError) as e:
        s.submit_result("e2", error="late")
    assert e.value.status == 409
    assert len(fake.calls("POST", "/v1/service/results")) == 4


def test_results_are_retried_while_the_node_is_unreachable_then_given_up():
    # Nothing listens on this port: connection refused every time.
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    s = Service(f"http://127.0.0.1:{port}", "tok", definition=None, result_retry_for=0.3, max_backoff=0.05)
    start = time.monotonic()
    with pytest.raises(MesgError, match="gave up"):
        s.submit_result("e1", outputs={})
    assert time.monotonic() - start >= 0.3


def test_concurrency_is_limited(fake):
    hold = threading.Event()
    tasks = [{"execution_id": f"e{i}", "task": "slow", "inputs": {}} for i in range(6)]
    fake.route("GET", "/v1/service/tasks")(lambda r: Stream(task_stream(tasks, hold)))
    fake.route("POST", "/v1/service/results")(lambda r: (200, {}))
    running, peak, lock = [0], [0], threading.Lock()

    def slow(task):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.15)
        with lock:
            running[0] -= 1
        return {}

    s = make(fake, max_concurrency=2)
    t, errors = run_in_thread(s, handlers={"slow": slow})
    wait_for(lambda: len(fake.calls("POST", "/v1/service/results")) == 6)
    s.stop()
    hold.set()
    t.join(5)
    assert peak[0] == 2


MESG_YML = """\
name: Demo   # a comment
tasks:
  # a comment line
  echo:
    inputs:
      message: {type: String}
  "say hi":
    outputs: {}
events:
  echoed:
    data: {m: {type: String}}
configuration:
  env: []
"""


def test_handlers_are_checked_against_mesg_yml(fake, tmp_path):
    path = tmp_path / "mesg.yml"
    path.write_text(MESG_YML)
    s = Service(fake.url, "tok", definition=str(path))
    s.add_handler("echo", lambda t: {})
    s.add_handler("other", lambda t: {})
    with pytest.raises(DefinitionMismatch) as e:
        s.listen()
    assert "does not declare: other" in str(e.value)
    assert "without a handler: say hi" in str(e.value)
    assert fake.requests == []  # refused before connecting

    with pytest.raises(DefinitionMismatch, match="no event `nope`"):
        s.emit("nope", {})


def test_mesg_yml_is_found_in_the_working_directory(fake, tmp_path, monkeypatch):
    (tmp_path / "mesg.yml").write_text(MESG_YML)
    monkeypatch.chdir(tmp_path)
    s = Service(fake.url, "tok")
    assert s.definition().tasks == ["echo", "say hi"]
    assert s.definition().events == ["echoed"]


def test_from_env_needs_the_node_variables(monkeypatch):
    monkeypatch.delenv("MESG_ENDPOINT", raising=False)
    with pytest.raises(MesgError, match="MESG_ENDPOINT is not set"):
        Service.from_env()
    monkeypatch.setenv("MESG_ENDPOINT", "http://x:1/")
    monkeypatch.setenv("MESG_TOKEN", "t")
    monkeypatch.setenv("MESG_SERVICE_HASH", "S")
    s = Service.from_env(definition=None)
    assert (s.endpoint, s.token, s.service_hash, s.instance_hash) == ("http://x:1", "t", "S", "")


@pytest.mark.parametrize(
    "text,tasks",
    [
        ("tasks:\n  a: {}\n  b:\n    inputs: {}\n", ["a", "b"]),
        ("tasks: {a: {inputs: {x: {type: String}}}, 'b': {}}\n", ["a", "b"]),
        ("tasks: {}\n", []),
        ("name: x\n", []),
        ("tasks:\n    deep: {}\n    other: {}\nevents: {}\n", ["deep", "other"]),
        ("tasks: [a]\n", None),
        ("tasks: &anchor\n  a: {}\n", None),
    ],
)
def test_the_minimal_yaml_reader(text, tasks):
    assert section_keys(text, "tasks") == tasks
