"""The systemd unit (deploy/rdbss.service): hardened to an exposure of 4 or better, and a stop
as systemd does it with KillMode=mixed (SIGTERM to the main process only) drains a read in
flight instead of losing it. No systemd runs here: the test sends the signal systemd sends."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from tests.daemon import running_daemon, wait_until

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "rdbss.service"

HARDENING = {
    "KillMode": "mixed",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "SystemCallFilter": "@system-service",
    "RuntimeDirectory": "rdbss",
    "StateDirectory": "rdbss",
}


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_has_the_hardening_and_the_drain_directives() -> None:
    found = directives()
    for key, value in HARDENING.items():
        assert value in found.get(key, []), f"{key}={value} missing from {UNIT}"


def test_unit_exposure_is_4_or_better() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # the directive check above stands in for it
        return
    run = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    level = re.search(r"Overall exposure level for rdbss.service: (\d+\.\d+)", run.stdout)
    assert level is not None, run.stdout + run.stderr
    assert float(level.group(1)) <= 4.0, run.stdout


SLOW = """
[[minirdr]]
name = "slow"
kind = "faulty"
wraps = "local"
[minirdr.options]
server = "slow"
shares = {{ data = "{share}" }}
[[minirdr.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "READ"
action = "delay"
delay_ms = 1500
"""


def test_sigterm_to_the_main_process_drains_a_read_in_flight(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "f.bin").write_bytes(b"x" * 100_000)
    with running_daemon(extra_config=SLOW.format(share=share)) as d:
        got: list[bytes | BaseException] = []
        opened = threading.Event()

        def read() -> None:
            try:
                with d.client(timeout=20.0) as c:
                    handle = c.create(r"\\slow\data\f.bin")
                    opened.set()
                    got.append(c.read_handle(handle.fobx, 0, 100_000))  # one request
            except BaseException as exc:  # reported by the assertion below
                got.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert opened.wait(10.0)
        with d.client() as c:
            wait_until(lambda: c.status()["pending"] > 0, timeout=10.0)  # the read is in flight
        os.kill(d.pid, signal.SIGTERM)  # what systemctl stop sends with KillMode=mixed
        reader.join(30.0)
        assert got and got[0] == b"x" * 100_000, got
        wait_until(lambda: not alive(d.pid), timeout=30.0)  # and then it stops


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by this test process, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
