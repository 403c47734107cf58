"""Several mini-redirectors claim one server name: the connection manager asks them all
(MRxCreateSrvCall), the first good one in provider order wins (MRxSrvCallWinnerNotify) and
the others that also succeeded are finalized (MRxFinalizeSrvCall)."""

from __future__ import annotations

from pathlib import Path

from tests.daemon import running_daemon


def two_claimants(tmp_path: Path, first: str, second: str) -> str:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "who.txt").write_text(name)
    return f"""
[[minirdr]]
name = "{first}"
kind = "local"
server = "dup"
[minirdr.shares]
data = "{tmp_path / first}"

[[minirdr]]
name = "{second}"
kind = "local"
server = "dup"
[minirdr.shares]
data = "{tmp_path / second}"
"""


def test_provider_order_picks_the_winner_and_losers_are_finalized(tmp_path: Path) -> None:
    config = two_claimants(tmp_path, "a", "b")
    order = 'provider_order = ["b", "a", "local"]'
    with running_daemon(config, daemon_extra=order) as d, d.client() as c:
        assert c.read_bytes(r"\\dup\data\who.txt") == b"b"
        conns = {x["name"].lower(): x["minirdr"] for x in c.status()["connections"]}
        assert conns[r"\\dup\data"] == "b"
        log = d.log()
    assert "finalizing losing SrvCall dup on a" in log


def test_a_claimant_that_fails_loses_to_the_next_one(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "who.txt").write_text("b")
    config = f"""
[[minirdr]]
name = "a"
kind = "faulty"
wraps = "local"
[minirdr.options]
server = "dup"
[minirdr.options.shares]
data = "{tmp_path}"
[[minirdr.rules]]
routine = "MRxCreateSrvCall"
action = "status"
status = "STATUS_LOGON_FAILURE"

[[minirdr]]
name = "b"
kind = "local"
server = "dup"
[minirdr.shares]
data = "{tmp_path / "b"}"
"""
    order = 'provider_order = ["a", "b", "local"]'
    with running_daemon(config, daemon_extra=order) as d, d.client() as c:
        assert c.read_bytes(r"\\dup\data\who.txt") == b"b"
        conns = {x["name"].lower(): x["minirdr"] for x in c.status()["connections"]}
        assert conns[r"\\dup\data"] == "b"
