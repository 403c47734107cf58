from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon import Daemon, running_daemon


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """One real daemon per test module (real processes, real sockets, a real folder)."""
    with running_daemon() as d:
        yield d


@pytest.fixture
def fresh_daemon() -> Iterator[Daemon]:
    """A daemon of its own, for tests that kill or stop processes."""
    with running_daemon() as d:
        yield d
