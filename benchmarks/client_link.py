"""How long a client call takes to fail when the daemon is not there (rdbss.link): the daemon
stopped, its core SIGKILLed under a pending request, a remote daemon refusing the client's key.
Each figure is the median of a few runs, next to its baseline: what the call would wait
without knowing (the request's deadline plus the client's grace).

    python -m benchmarks.client_link
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rdbss import keys
from rdbss.actors.supervisor import stop_daemon
from rdbss.client import GRACE_S, Client
from rdbss.config import RemoteDaemon
from rdbss.testing.daemon import Daemon, running_daemon, wait_until
from rdbss.wire import Access, CreateOptions, NtStatusError

TIMEOUT_S = 10.0
RUNS = 5


def _failure_s(call: Callable[[], object]) -> tuple[float, str]:
    started = time.monotonic()
    try:
        call()
    except NtStatusError as exc:
        return time.monotonic() - started, exc.status_name
    raise AssertionError("the call did not fail")


def _stopped() -> list[tuple[float, str]]:
    out = []
    for _ in range(RUNS):
        with running_daemon() as d:
            c = d.client(timeout=TIMEOUT_S)
            c.ping()
            stop_daemon(d.runtime_dir, timeout=20.0)
            out.append(_failure_s(c.ping))
            c.close()
    return out


def _core_killed() -> list[tuple[float, str]]:
    out = []
    with running_daemon() as d, d.client(timeout=TIMEOUT_S) as c:
        for _ in range(RUNS):
            _ready(d)
            folder = c.create(
                d.share,
                access=Access.FILE_LIST_DIRECTORY,
                options=CreateOptions.FILE_DIRECTORY_FILE,
            )
            core = d.processes()["core"]
            threading.Timer(0.2, os.kill, (core, signal.SIGKILL)).start()
            time.sleep(0.2)
            out.append(_failure_s(lambda f=folder.fobx: c.watch(f, timeout=TIMEOUT_S)))
            wait_until(lambda old=core: d.processes().get("core", old) != old, 10)
    return out


def _ready(d: Daemon) -> None:
    def serves() -> bool:
        try:
            with d.client(timeout=2) as c:
                return c.stat(d.share).is_dir
        except NtStatusError:
            return False

    wait_until(serves, 15)


def _key_refused() -> list[tuple[float, str]]:
    with tempfile.TemporaryDirectory(prefix="rdb-") as tmp:
        key_dir = Path(tmp) / "keys"
        keys.generate(key_dir, "core")
        keys.generate(key_dir, "stranger")
        allow = Path(tmp) / "authorized_keys"
        allow.write_text("")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        extra = (
            f'secret_key = "{key_dir / "core.key_secret"}"\n'
            f'client_listen = "tcp://127.0.0.1:{port}"\n'
            f'authorized_keys = "{allow}"\n'
        )
        remote = RemoteDaemon(
            f"tcp://127.0.0.1:{port}",
            str(key_dir / "core.key"),
            str(key_dir / "stranger.key_secret"),
        )
        with running_daemon(daemon_extra=extra):
            out = []
            for _ in range(RUNS):
                with Client(remote=remote, timeout=TIMEOUT_S) as c:
                    out.append(_failure_s(c.ping))
            return out


def run() -> list[tuple[str, float, str]]:
    rows = []
    for name, scenario in (
        ("daemon stopped (local)", _stopped),
        ("core SIGKILLed, request in flight", _core_killed),
        ("key refused (tcp:// + CURVE)", _key_refused),
    ):
        results = scenario()
        statuses = {status for _, status in results}
        rows.append((name, statistics.median(s for s, _ in results), "/".join(sorted(statuses))))
    return rows


def render(rows: list[tuple[str, float, str]]) -> str:
    baseline = TIMEOUT_S + GRACE_S
    width = max(len(name) for name, _, _ in rows)
    out = [
        f"client call failing when the daemon is not there (median of {RUNS}; baseline: "
        f"the {TIMEOUT_S:.0f} s deadline + {GRACE_S:.0f} s grace a blind wait ends at)",
        f"{'situation':<{width}} {'fails in':>9} {'baseline':>9} {'ratio':>7}  status",
    ]
    for name, seconds, status in rows:
        ratio = seconds / baseline
        out.append(f"{name:<{width}} {seconds:>8.3f}s {baseline:>8.1f}s {ratio:>7.4f}  {status}")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(run()))
