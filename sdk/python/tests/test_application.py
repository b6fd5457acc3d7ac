import json
import threading

import pytest
from conftest import Stream

from mesg import ApiError, Client


def sse(*items):
    out = []
    for name, data in items:
        if name is None:
            out.append(": keep-alive\n\n")
        else:
            out.append(f"event: {name}\ndata: {data if isinstance(data, str) else json.dumps(data)}\n\n")
    return out


def test_token_from_argument_env_or_data_dir(fake, tmp_path, monkeypatch):
    fake.route("GET", "/v1/node")(lambda r: (200, {"public_key": "K"}))
    monkeypatch.delenv("MESG_API_TOKEN", raising=False)
    (tmp_path / "api.token").write_text("from-file\n")
    monkeypatch.setenv("MESG_DATA_DIR", str(tmp_path))
    assert Client(fake.url).node() == {"public_key": "K"}
    monkeypatch.setenv("MESG_API_TOKEN", "from-env")
    Client(fake.url).node()
    Client(fake.url, token="given").node()
    auths = [r.headers.get("Authorization") for r in fake.requests]
    assert auths == ["Bearer from-file", "Bearer from-env", "Bearer given"]


def test_execute_with_wait_and_idempotency_key(fake):
    @fake.route("POST", "/v1/executions")
    def create(r):
        replay = len(fake.calls("POST", "/v1/executions")) > 1
        return (200 if replay else 201, {"id": "e1", "status": "Completed", "outputs": r.body["inputs"]}, {"Idempotent-Replayed": "true"} if replay else {})

    c = Client(fake.url, token="t")
    e = c.execute("echo", "echo", {"message": "hi"}, wait=True, wait_ms=5000, idempotency_key="order-7", tags=["a"])
    assert e["outputs"] == {"message": "hi"} and e["replayed"] is False
    again = c.execute("echo", "echo", {"message": "hi"}, wait=True, idempotency_key="order-7")
    assert again["replayed"] is True
    first = fake.calls("POST", "/v1/executions")[0]
    assert first.query == "wait=true&wait_ms=5000"
    assert first.headers["Idempotency-Key"] == "order-7"
    assert first.body == {"service": "echo", "task": "echo", "inputs": {"message": "hi"}, "tags": ["a"]}


def test_errors_carry_the_api_code_and_details(fake):
    fake.route("POST", "/v1/executions")(lambda r: (400, {"code": "invalid_inputs", "message": "inputs do not match", "details": ["/message: not a string"]}))
    with pytest.raises(ApiError) as e:
        Client(fake.url, token="t").execute("echo", "echo", {"message": 1})
    assert (e.value.status, e.value.code, e.value.details) == (400, "invalid_inputs", ["/message: not a string"])
    assert "/message: not a string" in str(e.value)


def test_follow_events_parses_sse_and_skips_keepalives_and_lagged(fake):
    fake.route("GET", "/v1/events/stream")(
        lambda r: Stream(iter(sse((None, None), ("event", {"key": "tick", "data": {"count": 1}}), ("lagged", "2 skipped"), ("event", {"key": "tick", "data": {"count": 2}}))), content_type="text/event-stream")
    )
    c = Client(fake.url, token="t")
    got = list(c.follow_events(service="echo", event="tick", reconnect=False))
    assert [e["data"]["count"] for e in got] == [1, 2]
    assert fake.calls("GET", "/v1/events/stream")[0].query == "service=echo&event=tick"


def test_follow_executions_reconnects_when_the_stream_breaks(fake):
    n = []

    @fake.route("GET", "/v1/executions/stream")
    def stream(r):
        n.append(1)
        return Stream(iter(sse(("execution", {"id": f"e{len(n)}", "status": "Completed"}))), content_type="text/event-stream")

    c = Client(fake.url, token="t")
    it = c.follow_executions(status="Completed")
    assert [next(it)["id"], next(it)["id"]] == ["e1", "e2"]
    it.close()


def test_processes(fake):
    created = {}

    @fake.route("POST", "/v1/processes")
    def create(r):
        created.update(r.body)
        return (201, {"id": "p1", "name": "demo"})

    fake.route("GET", "/v1/processes")(lambda r: (200, {"processes": [{"id": "p1"}]}))
    fake.route("DELETE", "/v1/processes/p1")(lambda r: (200, {"id": "p1"}))
    c = Client(fake.url, token="t")
    assert c.create_process("name: demo\n", env={"X": "1"})["id"] == "p1"
    assert created == {"definition": "name: demo\n", "env": {"X": "1"}}
    assert [p["id"] for p in c.processes()] == ["p1"]
    c.delete_process("p1")
