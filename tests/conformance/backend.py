"""What a conformance backend provides. Each mini-redirector kind has a module
``tests/conformance/backend_<kind>.py`` with a context manager::

    @contextlib.contextmanager
    def backend(base: Path) -> Iterator[BackendSetup]:
        # start the real server (fixtures in tests/servers/fixtures.py) under ``base``,
        # make an empty scratch folder on it, and yield how the daemon reaches it
        ...

``config`` is appended to the test daemon's TOML configuration (one or more ``[[minirdr]]``
tables; the local mini-redirector is always configured too). ``root`` is the UNC name of the
empty scratch folder every test works under. ``read_back`` reads a path relative to ``root``
(backslashes) with a client independent of rdbss, so the suite can check bytes on the server;
``write_direct`` writes one the same way. ``minirdr`` names the mini-redirector under test.
``host_path`` (when the server keeps its files on this machine, as every test server here does)
names where a path relative to ``root`` lives on disk, so a test can change or inspect it behind
the server's back (owner and mode, changes made directly in the folder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BackendSetup:
    minirdr: str
    config: str
    root: str
    read_back: Callable[[str], bytes]
    write_direct: Callable[[str, bytes], None]
    host_path: Callable[[str], Path] | None = None
