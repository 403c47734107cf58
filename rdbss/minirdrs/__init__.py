"""Mini-redirectors: the dispatch interface (base) and one module per protocol."""

from __future__ import annotations

import importlib

from rdbss.minirdrs.base import MiniRdr

#: kind -> "module:Class", imported only by the process that runs it
KINDS: dict[str, str] = {
    "local": "rdbss.minirdrs.local:LocalMiniRdr",
    "faulty": "rdbss.minirdrs.faulty:FaultyMiniRdr",
}


def load_kind(kind: str) -> type[MiniRdr]:
    module_name, _, class_name = KINDS[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, MiniRdr)):
        raise TypeError(f"{KINDS[kind]} is not a MiniRdr")
    return cls
