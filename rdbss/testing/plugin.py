"""pytest plugin: the conformance suite against a mini-redirector of a configured daemon.

Load it with ``-p rdbss.testing.plugin`` (``python -m rdbss.testing`` does) and give the target::

    --rdbss-config my.toml      the daemon's configuration (its runtime directory)
    --rdbss-minirdr NAME        the mini-redirector under test (its [[minirdr]] name)
    --rdbss-root //srv/share/d  an empty scratch folder it serves; every test works under it
    --rdbss-host-dir DIR        where that folder lives on this machine, if it does: the suite
                                then checks bytes there, independent of rdbss (else through a
                                second client of the daemon, and the tests that inspect the
                                server's folder skip)
    --rdbss-start-daemon        start a daemon on the configuration for the session (else one
                                must be running)

It provides the session fixture ``backend`` (a
:class:`~rdbss.testing.suite.harness.ConformanceBackend`) the suite's tests take, and names each
test's scratch folder after the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("rdbss.testing.suite")

from rdbss.config import load_config  # noqa: E402 - after the assert rewrite registration
from rdbss.testing.backend import (  # noqa: E402
    BackendSetup,
    folder_setup,
    through_daemon_setup,
    unc_root,
)
from rdbss.testing.daemon import daemon_on_config  # noqa: E402
from rdbss.testing.suite.harness import (  # noqa: E402
    ConformanceBackend,
    name_scratch_dirs,
    open_backend,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rdbss", "rdbss mini-redirector conformance")
    group.addoption("--rdbss-config", metavar="TOML", help="the daemon's configuration file")
    group.addoption("--rdbss-minirdr", metavar="NAME", help="the mini-redirector under test")
    group.addoption("--rdbss-root", metavar="UNC", help="an empty scratch folder it serves")
    group.addoption("--rdbss-host-dir", metavar="DIR", help="that folder on this machine")
    group.addoption(
        "--rdbss-start-daemon",
        action="store_true",
        help="start a daemon on the configuration for the session",
    )


@pytest.fixture(autouse=True)
def _name_scratch_dirs(request: pytest.FixtureRequest) -> None:
    """Name the running test's scratch folder after it."""
    name_scratch_dirs(request.node.name)


def _option(config: pytest.Config, name: str) -> str:
    value = config.getoption(name)
    if not value:
        raise pytest.UsageError(f"the rdbss conformance suite needs --{name.replace('_', '-')}")
    return str(value)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Iterator[ConformanceBackend]:
    """The mini-redirector the command line names, on its configured daemon."""
    config_path = Path(_option(request.config, "rdbss_config"))
    minirdr = _option(request.config, "rdbss_minirdr")
    try:
        root = unc_root(_option(request.config, "rdbss_root"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    host_dir = request.config.getoption("rdbss_host_dir")
    runtime_dir = load_config(config_path).runtime_dir
    setup: BackendSetup
    if host_dir:
        setup = folder_setup(minirdr, "", root, Path(host_dir))
    else:
        setup = through_daemon_setup(minirdr, root, runtime_dir)
    with contextlib.ExitStack() as stack:
        if request.config.getoption("rdbss_start_daemon"):
            stack.enter_context(daemon_on_config(config_path))
        yield stack.enter_context(open_backend(None, setup, runtime_dir))
