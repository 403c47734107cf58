"""The mini-redirector conformance suite (rdbss.testing.suite) against every backend here.

Every module ``tests/conformance/backend_<kind>.py`` is a backend (see ``backend.py``). The
session-scoped ``backend`` fixture is parametrized by those kinds (test ids carry the kind, so
``pytest tests/conformance -k smb`` runs one backend): it starts the backend's real server, one
rdbss daemon configured for it, connects a client and reads what the mini-redirector under test
registered with the core. The test modules re-export the suite's modules.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("rdbss.testing.suite")

from rdbss.testing.backend import BackendSetup  # noqa: E402 - after the rewrite registration
from rdbss.testing.daemon import running_daemon  # noqa: E402
from rdbss.testing.plugin import _name_scratch_dirs  # noqa: E402, F401 - autouse fixture
from rdbss.testing.suite.harness import ConformanceBackend, open_backend  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKEND_PREFIX = "backend_"


def discover_backends() -> list[str]:
    """The kinds that have a ``backend_<kind>.py`` module next to this file, sorted."""
    return sorted(
        info.name[len(BACKEND_PREFIX) :]
        for info in pkgutil.iter_modules([str(HERE)])
        if info.name.startswith(BACKEND_PREFIX) and not info.ispkg
    )


KINDS = discover_backends()


@pytest.fixture(scope="session", params=KINDS, ids=KINDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConformanceBackend]:
    """One real server, one daemon and one client per backend kind, for the whole session."""
    kind: str = request.param
    module = importlib.import_module(f"tests.conformance.{BACKEND_PREFIX}{kind}")
    with contextlib.ExitStack() as stack:
        setup: BackendSetup = stack.enter_context(
            module.backend(tmp_path_factory.mktemp(f"conformance-{kind}"))
        )
        daemon = stack.enter_context(running_daemon(extra_config=setup.config))
        yield stack.enter_context(open_backend(kind, setup, daemon.runtime_dir))
