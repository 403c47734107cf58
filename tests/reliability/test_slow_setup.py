"""A slow connection set-up blocks only the requests that need that connection: reads on other
connections complete while it is still pending. Untimed: only the order of events is checked."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rdbss.client import Client
from tests.daemon import running_daemon
from tests.reliability.test_faulty import faulty_config

SLOW_SETUP = """
[[minirdr.rules]]
routine = "MRxCreateSrvCall"
action = "delay"
delay_ms = 4000
"""
SLOW = r"\\slow\data"


def condition(client: Client, name: str) -> str | None:
    conns = {c["name"].lower(): c["condition"] for c in client.status()["connections"]}
    return conns.get(name.lower())


def test_reads_complete_while_a_connection_setup_is_pending(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "x.txt").write_bytes(b"slow server")
    config = faulty_config(folder, SLOW_SETUP).replace('"flaky"', '"slow"')
    with running_daemon(config) as d:
        (d.share_dir / "fast.bin").write_bytes(b"f" * 4096)
        events: list[str] = []
        lock = threading.Lock()

        def slow_open() -> None:
            with d.client(timeout=20.0) as c:
                data = c.read_bytes(SLOW + r"\x.txt")
            with lock:
                events.append(f"setup-done:{data.decode()}")

        t = threading.Thread(target=slow_open)
        with d.client() as fast:
            handle = fast.create(d.share + r"\fast.bin")
            t.start()
            deadline = time.monotonic() + 10
            while condition(fast, SLOW) != "IN_TRANSITION":
                assert time.monotonic() < deadline, "the slow set-up never started"
                time.sleep(0.02)
            for _ in range(300):  # another connection, another mini-redirector process
                assert fast.read_handle(handle.fobx, 0, 4096) == b"f" * 4096
            still = condition(fast, SLOW)
            with lock:
                events.append("fast-reads-done")
            t.join(30)
        assert not t.is_alive()
        assert still == "IN_TRANSITION"  # the reads finished while the set-up was pending
        assert events == ["fast-reads-done", "setup-done:slow server"]


def test_a_slow_setup_holds_only_its_own_connection_inside_one_minirdr(tmp_path: Path) -> None:
    """Two server names on one mini-redirector process: each SrvCall has its own worker, so the
    pending set-up of one does not hold the I/O of the other."""
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "x.txt").write_bytes(b"x" * 4096)
    config = faulty_config(folder).replace(
        'server = "flaky"', 'server = "fast"\naliases = ["late"]'
    )
    with running_daemon(config) as d, d.client() as c:
        handle = c.create(r"\\fast\data\x.txt")  # \\fast is connected before the rule exists
        c.set_faults(
            "flaky", [{"routine": "MRxCreateSrvCall", "action": "delay", "delay_ms": 4000}]
        )
        done: list[str] = []

        def late_read() -> None:
            with d.client(timeout=20.0) as late:
                done.append(late.read_bytes(r"\\late\data\x.txt")[:1].decode())

        t = threading.Thread(target=late_read)
        t.start()
        deadline = time.monotonic() + 10
        while condition(c, r"\\late\data") != "IN_TRANSITION":
            assert time.monotonic() < deadline, "the slow set-up never started"
            time.sleep(0.02)
        for _ in range(300):
            assert c.read_handle(handle.fobx, 0, 4096) == b"x" * 4096
        assert condition(c, r"\\late\data") == "IN_TRANSITION"
        assert done == []
        t.join(30)
        assert done == ["x"]
