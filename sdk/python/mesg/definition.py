"""A minimal reader of a service's mesg.yml: the keys of its `tasks:` and `events:`.

Not a YAML parser: it reads block mappings (the format `mesg service init` writes and
the node's docs use) and flow mappings on one line (`tasks: {a: {...}, b: {...}}`).
What it cannot read gives None, and the caller skips its checks rather than guessing.
The node validates the file for real at deploy time.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional

__all__ = ["Definition", "read_definition", "section_keys"]

_KEY = re.compile(r"""^(?:"((?:[^"\\]|\\.)*)"|'((?:[^']|'')*)'|([^\s#'"{\[][^:#]*?))\s*:(?:\s|$)""")


def _strip_comment(line: str) -> str:
    out = []
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(c)
    return "".join(out).rstrip()


def _key(text: str) -> Optional[str]:
    m = _KEY.match(text)
    if not m:
        return None
    if m.group(1) is not None:
        return m.group(1).replace('\\"', '"').replace("\\\\", "\\")
    if m.group(2) is not None:
        return m.group(2).replace("''", "'")
    return m.group(3).strip()


def _flow_keys(text: str) -> Optional[List[str]]:
    """Top-level keys of a one-line flow mapping `{a: {...}, b: x}`."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    keys: List[str] = []
    depth = 0
    quote = None
    part = ""
    for c in text[1:-1] + ",":
        if quote:
            part += c
            if c == quote:
                quote = None
            continue
        if c in "'\"":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        elif c == "," and depth == 0:
            if part.strip():
                k = _key(part.strip())
                if k is None:
                    return None
                keys.append(k)
            part = ""
            continue
        part += c
    return keys


def section_keys(text: str, section: str) -> Optional[List[str]]:
    """Keys of the top-level mapping `section` (e.g. "tasks"); [] when the section is
    absent or empty; None when this reader cannot tell."""
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        line = _strip_comment(raw)
        if not line or line[0] in " \t" or _key(line) != section:
            continue
        m = _KEY.match(line)
        rest = line[m.end() :].strip() if m else ""
        if rest:
            if rest in ("{}", "~", "null"):
                return []
            return _flow_keys(rest)
        keys: List[str] = []
        indent: Optional[int] = None
        for raw2 in lines[i + 1 :]:
            l2 = _strip_comment(raw2)
            if not l2.strip():
                continue
            if "\t" in l2[: len(l2) - len(l2.lstrip())]:
                return None
            width = len(l2) - len(l2.lstrip(" "))
            if width == 0:
                break
            if indent is None:
                indent = width
            if width < indent:
                return None
            if width == indent:
                k = _key(l2.strip())
                if k is None:
                    return None
                keys.append(k)
        return keys
    return []


class Definition:
    """The task and event keys a mesg.yml declares (None: could not be read)."""

    def __init__(self, path: str, tasks: Optional[List[str]], events: Optional[List[str]]):
        self.path = path
        self.tasks = tasks
        self.events = events

    def __repr__(self) -> str:
        return f"Definition({self.path!r}, tasks={self.tasks!r}, events={self.events!r})"


def read_definition(path: str) -> Definition:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return Definition(path, section_keys(text, "tasks"), section_keys(text, "events"))


def find_definition(candidates: List[str]) -> Optional[str]:
    for c in candidates:
        p = os.path.join(c, "mesg.yml") if os.path.isdir(c) else c
        if os.path.isfile(p):
            return p
    return None


