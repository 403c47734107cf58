"""Quota (MRxQueryQuotaInfo / MRxSetQuotaInfo) through a real daemon against real Samba.

Samba answers SMB2 quota queries from its quota source: the file system's quotas, or the
``get quota command`` / ``set quota command`` an administrator configures. This machine's file
system has no quotas enabled, so the quota server here gets a small quota store as those
commands (a folder of files the test can read directly); a second server without any quota
source must answer an empty list. The other backends have no quotas (SFTP has none, Linux
quotactl is not enabled here, wsgidav's RFC 4331 properties are the disk's free space): they
leave the routines unregistered, which tests/conformance/test_quota.py checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.testing.suite.harness import raises_status
from rdbss.wire import NtStatus
from tests.conformance.backend_smb import smb_config, write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import SambaServer, require_or_skip

S = NtStatus
USED_KIB = 64  # what the quota store says root uses
SOFT_KIB, HARD_KIB = 512, 1024  # root's limits in the store at the start (Samba lists only
# the users that have limits)

GET_QUOTA = """#!/bin/sh
# get quota command: <path> <type> <id>; answers <state> <used blocks> <soft blocks>
# <hard blocks> <used inodes> <soft inodes> <hard inodes> <block size>
f="{state}/$2-$3"
soft=0; hard=0
[ -f "$f" ] && read soft hard < "$f"
used=0
[ "$2" = "2" ] && [ "$3" = "0" ] && used={used}
echo "2 $used $soft $hard 0 0 0 1024"
"""
SET_QUOTA = """#!/bin/sh
# set quota command: <path> <type> <id> <state> <soft blocks> <hard blocks> <soft inodes>
# <hard inodes> [<block size>]; kept in 1 KiB blocks
bs=${{9:-1024}}
echo "$(( $5 * bs / 1024 )) $(( $6 * bs / 1024 ))" > "{state}/$2-$3"
echo 0  # Samba takes a set as done when the command prints a line
"""


@dataclass
class QuotaServers:
    client: Client
    state: Path  # the quota store's folder

    @staticmethod
    def unc(server: str, *parts: str) -> str:
        return "\\".join([rf"\\{server}\share", *parts])


@pytest.fixture(scope="module")
def quota(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuotaServers]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base = tmp_path_factory.mktemp("quota")
    state = base / "quota-state"
    state.mkdir()
    (state / "2-0").write_text(f"{SOFT_KIB} {HARD_KIB}\n")  # user quota (type 2) of uid 0
    for name, text in (("getquota.sh", GET_QUOTA), ("setquota.sh", SET_QUOTA)):
        (base / name).write_text(text.format(state=state, used=USED_KIB))
        (base / name).chmod(0o755)
    commands = (
        f"    get quota command = {base / 'getquota.sh'}\n"
        f"    set quota command = {base / 'setquota.sh'}\n"
    )
    with contextlib.ExitStack() as stack:
        with_quota = stack.enter_context(SambaServer(base / "q", extra_global=commands))
        without = stack.enter_context(SambaServer(base / "plain"))
        config = smb_config(with_quota, write_password_file(base / "q.pw", with_quota.password))
        config += smb_config(
            without,
            write_password_file(base / "p.pw", without.password),
            name="smbplain",
            server="plainsmb",
        )
        daemon = stack.enter_context(running_daemon(extra_config=config))
        client = stack.enter_context(daemon.client())
        client.write_bytes(QuotaServers.unc("sambatest", "f.txt"), b"x")
        yield QuotaServers(client, state)


def _root_entry(entries: list[dict]) -> dict:
    """root's entry: the one the quota store says uses USED_KIB."""
    found = [e for e in entries if e["used"] == USED_KIB * 1024]
    assert len(found) == 1, f"no single entry using {USED_KIB} KiB: {entries}"
    return found[0]


def test_query_lists_the_entries_with_limits(quota: QuotaServers) -> None:
    entries = quota.client.query_quota(quota.unc("sambatest", "f.txt"))
    assert entries and all(e["sid"].startswith("S-1-") for e in entries)
    root = _root_entry(entries)
    assert (root["threshold"], root["limit"]) == (SOFT_KIB * 1024, HARD_KIB * 1024)


def test_set_then_query_round_trips_and_reaches_the_store(quota: QuotaServers) -> None:
    c = quota.client
    root = _root_entry(c.query_quota(quota.unc("sambatest")))
    c.set_quota(
        quota.unc("sambatest", "f.txt"),
        [{"sid": root["sid"], "threshold": 1 << 20, "limit": 2 << 20}],
    )
    # the server's own quota store holds it (in 1 KiB blocks), independent of rdbss
    assert (quota.state / "2-0").read_text().split() == ["1024", "2048"]
    again = c.query_quota(quota.unc("sambatest"), sids=[root["sid"]])
    assert len(again) == 1 and again[0]["sid"] == root["sid"]
    assert (again[0]["threshold"], again[0]["limit"]) == (1 << 20, 2 << 20)
    assert again[0]["used"] == USED_KIB * 1024


def test_a_server_without_a_quota_source_has_no_entries(quota: QuotaServers) -> None:
    assert quota.client.query_quota(quota.unc("plainsmb")) == []


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [{"threshold": 1, "limit": 2}],
        [{"sid": "nope", "threshold": 1, "limit": 2}],
        [{"sid": "S-1-22-1-0", "threshold": -2, "limit": 2}],
        [{"sid": "S-1-22-1-0", "threshold": 1, "limit": 2, "used": 5}],
    ],
    ids=["none", "no-sid", "bad-sid", "negative", "used-given"],
)
def test_bad_quota_sets_are_refused(quota: QuotaServers, entries: list) -> None:
    with raises_status(S.STATUS_INVALID_PARAMETER):
        quota.client.set_quota(quota.unc("sambatest"), entries)


def test_bad_quota_queries_are_refused(quota: QuotaServers) -> None:
    with raises_status(S.STATUS_INVALID_PARAMETER):
        quota.client.query_quota(quota.unc("sambatest"), sids=["not-a-sid"])
