"""Conformance backend: the local-folder mini-redirector (the share is a plain folder)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rdbss.testing.backend import BackendSetup, folder_setup


@contextlib.contextmanager
def backend(base: Path) -> Iterator[BackendSetup]:
    folder = base / "localshare"
    folder.mkdir()
    config = f"""
[[minirdr]]
name = "local2"
kind = "local"
server = "conformance"
[minirdr.shares]
share = "{folder}"
"""
    yield folder_setup("local2", config, r"\\conformance\share", folder)
