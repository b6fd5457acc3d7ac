"""mesg: write Services and Applications for a mesg network in Python.

Service side (in a container started by a node)::

    from mesg import Service
    service = Service.from_env()

    @service.task("echo")
    def echo(task):
        service.emit("echoed", {"message": task.inputs.get("message", "")})
        return task.inputs

    service.listen()

Application side (anywhere that reaches a node's API)::

    from mesg import Client
    node = Client("http://127.0.0.1:50052", token="...")
    print(node.execute("echo", "echo", {"message": "hi"}, wait=True)["outputs"])
    for event in node.follow_events(service="echo"):
        print(event["key"], event["data"])

Standard library only; see docs/sdks.md.
"""

from ._http import ApiError, MesgError
from .application import Client
from .definition import Definition, read_definition
from .service import DefinitionMismatch, Service, Task

__all__ = ["ApiError", "Client", "Definition", "DefinitionMismatch", "MesgError", "Service", "Task", "read_definition"]
__version__ = "0.1.0"
