"""py-echo: the Python SDK's example service. `echo` returns its inputs (and the
language), `tick` emits a `tick` event. The SDK (sdk/python/mesg) is copied beside this
file when the service is built (testnet/build.sh services)."""

import itertools
import logging

from mesg import Service

logging.basicConfig(level=logging.INFO, format="py-echo: %(message)s")
service = Service.from_env()
ticks = itertools.count(1)


@service.task("echo")
def echo(task):
    return {**task.inputs, "language": "python"}


@service.task("tick")
def tick(task):
    count = next(ticks)
    data = {"count": count}
    if task.inputs.get("value") is not None:
        data["value"] = task.inputs["value"]
    service.emit("tick", data)  # attributed to this execution
    return {"count": count}


service.listen()
