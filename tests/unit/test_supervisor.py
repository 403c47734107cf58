"""Supervisor pieces that need no child processes: the restart policy and systemd notify."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rdbss.actors.supervisor import Child, RestartPolicy, Supervisor, sd_notify
from rdbss.config import embedded_default


def test_restart_backoff_grows_and_gives_up_past_the_intensity(tmp_path: Path) -> None:
    config = embedded_default()
    config.runtime_dir = tmp_path
    sup = Supervisor(
        config, RestartPolicy(intensity=4, period_s=10.0, backoff_initial_s=0.1, backoff_max_s=0.2)
    )
    child = Child("minirdr", "local")
    delays = []
    for now in (0.0, 1.0, 2.0, 2.5):
        sup._schedule_restart(child, now)
        delays.append(round(child.next_start - now, 3))
    assert delays[:3] == [0.0, 0.1, 0.2]  # the first at once (a standby takes over), doubling
    assert not child.gave_up
    sup._schedule_restart(child, 3.0)
    assert child.gave_up  # a fifth exit within 10 s
    fresh = Child("minirdr", "other")
    for now in (0.0, 11.0, 22.0, 33.0, 44.0):  # spread out: the window forgets old restarts
        sup._schedule_restart(fresh, now)
    assert not fresh.gave_up


def test_sd_notify_sends_readiness_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sd_notify("READY=1")
        assert server.recv(100) == b"READY=1"
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not sd_notify("READY=1")
    finally:
        server.close()
