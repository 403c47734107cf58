"""Conformance backend: the local-folder mini-redirector (the share is a plain folder)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.conformance.backend import BackendSetup


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

    def host(rel: str) -> Path:
        return folder.joinpath(*rel.split("\\"))

    def write_direct(rel: str, data: bytes) -> None:
        host(rel).write_bytes(data)

    yield BackendSetup(
        minirdr="local2",
        config=config,
        root=r"\\conformance\share",
        read_back=lambda rel: host(rel).read_bytes(),
        write_direct=write_direct,
        host_path=host,
    )
