"""What a conformance backend provides (rdbss.testing.backend). Each mini-redirector kind has a
module ``tests/conformance/backend_<kind>.py`` with a context manager::

    @contextlib.contextmanager
    def backend(base: Path) -> Iterator[BackendSetup]:
        # start the real server (rdbss.testing.servers) under ``base``, make an empty scratch
        # folder on it, and yield how the daemon reaches it
        ...

The local mini-redirector is always configured too (the test daemon's ``\\\\local\\data``).
"""

from rdbss.testing.backend import BackendSetup

__all__ = ["BackendSetup"]
