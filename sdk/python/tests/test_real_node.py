"""The Application side against a real mesg-node running the real `echo` service.

Needs the binaries and the service: MESG_NODE_BIN (mesg-node), MESG_CLI_BIN (mesg, to
deploy), MESG_ECHO_DIR (the built echo service, target/mesg-services/echo) and Docker.
sdk/test.sh builds and sets them; without them these tests are skipped, unless
MESG_SDK_REQUIRE_NODE=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from mesg import ApiError, Client

NEEDED = ("MESG_NODE_BIN", "MESG_CLI_BIN", "MESG_ECHO_DIR")
missing = [v for v in NEEDED if not os.environ.get(v)]
if missing and os.environ.get("MESG_SDK_REQUIRE_NODE") != "1":
    pytest.skip(f"no real node: set {', '.join(missing)} (sdk/test.sh does)", allow_module_level=True)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    def __init__(self) -> None:
        assert not missing, f"MESG_SDK_REQUIRE_NODE=1 but {missing} unset"
        self.dir = tempfile.mkdtemp(prefix="mesg-sdk-py-")
        self.api = free_port()
        self.log = open(os.path.join(self.dir, "node.log"), "wb")
        self.proc = subprocess.Popen(
            [os.environ["MESG_NODE_BIN"], "--data-dir", self.dir, "--api", f"127.0.0.1:{self.api}",
             "--service-api", f"0.0.0.0:{free_port()}", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "MESG_LOG": "info"},
        )
        self.url = f"http://127.0.0.1:{self.api}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.api), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, self.logs()
                assert time.monotonic() < deadline, "node API not up in 30 s\n" + self.logs()
                time.sleep(0.05)
        self.client = Client(self.url, data_dir=self.dir)
        self.key = self.client.node()["public_key"]

    def logs(self) -> str:
        with open(os.path.join(self.dir, "node.log"), encoding="utf-8", errors="replace") as f:
            return f.read()[-5000:]

    def mesg(self, *args: str) -> str:
        out = subprocess.run([os.environ["MESG_CLI_BIN"], "--node", self.url, "--node-data-dir", self.dir, *args],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"mesg {' '.join(args)}: {out.stdout}{out.stderr}"
        return out.stdout

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        label = f"label=mesg.node={self.key}"
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
        nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True).stdout.split()
        if nets:
            subprocess.run(["docker", "network", "rm", *nets], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def node():
    n = Node()
    try:
        n.mesg("service", "deploy", os.environ["MESG_ECHO_DIR"], "--start")
        deadline = time.monotonic() + 30
        while not any(i.get("connected") for i in n.client.instances()):
            assert time.monotonic() < deadline, "echo never connected\n" + n.logs()
            time.sleep(0.1)
        yield n
    finally:
        n.close()


def test_execute_wait_and_idempotency(node):
    c = node.client
    e = c.execute("echo", "echo", {"message": "from python"}, wait=True)
    assert e["status"] == "Completed", e
    assert e["outputs"] == {"message": "from python"}
    assert c.execution(e["id"])["status"] == "Completed"

    key = "py-" + uuid.uuid4().hex
    first = c.execute("echo", "echo", {"message": "once"}, wait=True, idempotency_key=key)
    again = c.execute("echo", "echo", {"message": "once"}, wait=True, idempotency_key=key)
    assert again["id"] == first["id"] and again["replayed"] is True and first["replayed"] is False
    with pytest.raises(ApiError) as err:
        c.execute("echo", "echo", {"message": "other"}, idempotency_key=key)
    assert err.value.status == 422

    started = c.execute("echo", "sleep", {"ms": 50})
    assert c.wait(started["id"], timeout_ms=10_000)["status"] == "Completed"
    assert any(x["id"] == started["id"] for x in c.executions(task="sleep"))

    with pytest.raises(ApiError) as err:
        c.execute("echo", "no-such-task")
    assert err.value.code == "unknown_task"


def test_follow_events_and_executions(node):
    c = node.client
    events, executions = [], []
    marker = uuid.uuid4().hex

    def follow_events():
        for ev in c.follow_events(service="echo", event="tick"):
            events.append(ev)
            if ev["data"].get("value") == marker:
                return

    def follow_executions():
        for ex in c.follow_executions(service="echo", task="tick", status="Completed"):
            executions.append(ex)
            if ex["inputs"].get("value") == marker:
                return

    threads = [threading.Thread(target=f, daemon=True) for f in (follow_events, follow_executions)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        c.execute("echo", "tick", {"value": marker}, wait=True)
        for t in threads:
            t.join(0.5)
    assert events and events[-1]["data"]["value"] == marker and events[-1]["key"] == "tick"
    assert executions and executions[-1]["status"] == "Completed"
    assert [e["data"]["value"] for e in c.events(service="echo", event="tick")][0] == marker


def test_processes(node):
    c = node.client
    name = "py-" + uuid.uuid4().hex[:8]
    definition = f"""
name: {name}
steps:
  - key: tick
    trigger: {{service: echo, event: tick}}
  - key: mine
    filter: {{path: value, eq: {name}}}
  - key: say
    task: {{service: echo, task: echo, inputs: {{message: {{step: tick, path: value}}}}}}
"""
    p = c.create_process(definition)
    assert p["name"] == name
    assert any(x["id"] == p["id"] for x in c.processes())
    c.execute("echo", "tick", {"value": name}, wait=True)
    deadline = time.monotonic() + 20
    while True:
        runs = c.runs(p["id"])
        if runs and runs[0]["status"] != "running":
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    run = c.run(runs[0]["id"])
    assert run["status"] == "completed", run
    assert set(run["steps"]) >= {"tick", "mine", "say"}, run
    c.delete_process(p["id"])
    assert all(x["id"] != p["id"] for x in c.processes())
