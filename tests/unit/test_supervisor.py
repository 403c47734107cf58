"""Supervisor pieces that need no child processes: child specs and restart decisions
(rdbss.model.restart), and systemd notify."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from rdbss.actors.supervisor import Child, Supervisor, apply_decision, sd_notify
from rdbss.config import NodeConfig, embedded_default
from rdbss.model.restart import (
    ChildSpec,
    Restart,
    RestartDecision,
    RestartPolicy,
    Role,
    child_specs,
    decide_restart,
    minirdr_spec,
)


def _exits(spec: ChildSpec, times: list[float], policy: RestartPolicy) -> list[RestartDecision]:
    """The decisions for ``spec`` exiting at each of ``times``, remembering the history."""
    history: tuple[float, ...] = ()
    decisions = []
    for now in times:
        decision = decide_restart(spec, history, now, policy)
        history = decision.history
        decisions.append(decision)
    return decisions


def test_restart_backoff_grows_and_gives_up_past_the_intensity() -> None:
    policy = RestartPolicy(intensity=4, period_s=10.0, backoff_initial_s=0.1, backoff_max_s=0.2)
    decisions = _exits(minirdr_spec("local"), [0.0, 1.0, 2.0, 2.5, 3.0], policy)
    # the first at once (a standby takes over), doubling up to the maximum
    assert [round(d.delay_s, 3) for d in decisions[:3]] == [0.0, 0.1, 0.2]
    assert all(d.restart and not d.gave_up for d in decisions[:4])
    assert decisions[4].gave_up and not decisions[4].restart  # a fifth exit within 10 s
    # spread out: the window forgets old restarts
    spread = _exits(minirdr_spec("other"), [0.0, 11.0, 22.0, 33.0, 44.0], policy)
    assert all(d.restart and not d.gave_up for d in spread)


def test_a_peer_exit_tells_the_core_and_a_drop_is_not_counted() -> None:
    policy = RestartPolicy()
    core, connmgr, local = child_specs(embedded_default())
    assert not decide_restart(core, (), 0.0, policy).tell_core  # the core is no peer of itself
    assert decide_restart(connmgr, (), 0.0, policy).tell_core
    dropped = decide_restart(local, (1.0, 2.0), 3.0, policy, dropped=True)
    assert dropped.restart and dropped.delay_s == 0.0 and not dropped.tell_core
    assert dropped.history == (1.0, 2.0)  # not counted by the policy
    assert dropped.clean  # logged as a clean restart, not as a failure


def test_restart_types_follow_otp() -> None:
    policy = RestartPolicy()
    spec = minirdr_spec("local")
    transient = replace(spec, restart=Restart.TRANSIENT)
    temporary = replace(spec, restart=Restart.TEMPORARY)
    assert decide_restart(spec, (), 0.0, policy, exit_code=0).restart
    assert not decide_restart(transient, (), 0.0, policy, exit_code=0).restart
    assert decide_restart(transient, (), 0.0, policy, exit_code=1).restart
    assert not decide_restart(temporary, (), 0.0, policy, exit_code=1).restart


def test_child_specs_start_the_core_first_and_a_node_runs_minirdrs_only() -> None:
    config = embedded_default()
    specs = child_specs(config)
    assert [s.role for s in specs] == [Role.CORE, Role.CONNMGR] + [Role.MINIRDR] * len(
        config.minirdrs
    )
    assert specs[0].serves_bus and specs[0].shutdown_s > specs[1].shutdown_s  # it drains
    assert [s.name for s in specs[2:]] == [m.name for m in config.minirdrs]
    assert all(s.standby and s.reloadable for s in specs[2:])
    node = replace(config, node=NodeConfig(core="tcp://core:7001", core_key="k"))
    assert [s.role for s in child_specs(node)] == [Role.MINIRDR] * len(config.minirdrs)


def test_the_supervisor_applies_a_decision(tmp_path: Path) -> None:
    config = embedded_default()
    config.runtime_dir = tmp_path
    sup = Supervisor(config)
    assert [c.spec for c in sup.children] == child_specs(config)
    child = Child(minirdr_spec("local"))
    apply_decision(child, RestartDecision(True, 0.5, (1.0,)), 1.0)
    assert child.next_start == 1.5 and child.restarts == (1.0,) and not child.gave_up
    apply_decision(child, RestartDecision(False, 0.0, (1.0,), gave_up=True), 2.0)
    assert child.gave_up


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
