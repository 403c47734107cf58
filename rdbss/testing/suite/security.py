"""MRxQuerySdInfo / MRxSetSdInfo: the security descriptor of a file as each backend really has
it. POSIX backends (local, SFTP) map the owner, group and mode (owner S-1-22-1-<uid>, group
S-1-22-2-<gid>, a DACL of owner / group / Everyone allow ACEs); an SMB server answers its own
descriptor. Checked against the file's owner and mode on the server's disk."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest

from rdbss import requests as rq
from rdbss.minirdrs.common.security import (
    EVERYONE,
    FILE_GENERIC_EXECUTE,
    FILE_GENERIC_READ,
    FILE_GENERIC_WRITE,
)
from rdbss.testing.suite.harness import ConformanceBackend, opened, raises_status
from rdbss.wire import Access, NtStatus, NtStatusError, Routine

S = NtStatus
READ_CONTROL = Access.READ_CONTROL | Access.FILE_READ_ATTRIBUTES
WRITE_SECURITY = Access.WRITE_DAC | Access.WRITE_OWNER | Access.FILE_READ_ATTRIBUTES
FILE_READ_DATA, FILE_WRITE_DATA = 0x1, 0x2


def _ace_for(sd: dict[str, Any], sid: str) -> dict[str, Any] | None:
    """What the allow ACEs for ``sid`` grant together (a server mapping POSIX ACLs may list a
    SID twice); None when there is none."""
    found = [
        ace for ace in sd["dacl"] or [] if ace["sid"].upper() == sid.upper() and ace["type"] == 0
    ]
    if not found:
        return None
    mask = 0
    for ace in found:
        mask |= ace["mask"]
    return {"type": 0, "sid": sid, "mask": mask}


def test_query_security_after_create(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("owned.txt"), b"x")
    sd = c.query_security(d.path("owned.txt"))
    assert sd["owner"].startswith("S-1-") and sd["group"].startswith("S-1-"), sd
    assert isinstance(sd["dacl"], list) and sd["dacl"], f"no DACL: {sd}"
    st = os.stat(d.host("owned.txt"))
    if "mode" in sd:  # a POSIX backend: the mapping is exact
        assert sd["owner"] == f"S-1-22-1-{st.st_uid}"
        assert sd["group"] == f"S-1-22-2-{st.st_gid}"
        assert sd["mode"] == st.st_mode
        owner_ace = _ace_for(sd, sd["owner"])
        assert owner_ace is not None and owner_ace["mask"] & FILE_READ_DATA
        assert bool(owner_ace["mask"] & FILE_WRITE_DATA) == bool(st.st_mode & stat.S_IWUSR)
        if backend.kind == "local":  # created by this very process
            assert st.st_uid == os.getuid() and sd["owner_name"] is not None
    else:  # the server's own descriptor: the owner has an ACE that lets it read and write
        owner_ace = _ace_for(sd, sd["owner"])
        assert owner_ace is not None, f"no ACE for the owner {sd['owner']}: {sd['dacl']}"
        assert owner_ace["mask"] & FILE_READ_DATA and owner_ace["mask"] & FILE_WRITE_DATA


def test_query_security_honours_security_information(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    owner_only = c.query_security(d.path("f.txt"), info=0x1)
    assert "owner" in owner_only and "group" not in owner_only and "dacl" not in owner_only
    dacl_only = c.query_security(d.path("f.txt"), info=0x4)
    assert "dacl" in dacl_only and "owner" not in dacl_only and "group" not in dacl_only
    with raises_status(S.STATUS_INVALID_PARAMETER):
        c.query_security(d.path("f.txt"), info=0)


def test_set_dacl_changes_the_mode(backend: ConformanceBackend) -> None:
    """Owner read+write, Everyone read, nothing for the group: mode 0604 on the server's disk,
    and the query after it says the same."""
    backend.requires(Routine.MRxSetSdInfo)
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    owner = c.query_security(d.path("f.txt"), info=0x1)["owner"]
    dacl = [
        {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ | FILE_GENERIC_WRITE, "sid": owner},
        {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ, "sid": EVERYONE},
    ]
    c.set_security(d.path("f.txt"), dacl=dacl)
    mode = os.stat(d.host("f.txt")).st_mode
    # owner and other bits; the group bits may be a POSIX ACL's mask where the server keeps ACLs
    assert mode & 0o700 == 0o600 and mode & 0o007 == 0o004, oct(mode)
    after = c.query_security(d.path("f.txt"))
    everyone = _ace_for(after, EVERYONE)
    assert everyone is not None and everyone["mask"] & FILE_READ_DATA
    assert not everyone["mask"] & FILE_WRITE_DATA
    if "mode" in after:
        assert after["mode"] & 0o7777 == 0o604
        assert after["dacl"] == dacl
    else:
        owner_ace = _ace_for(after, owner)
        assert owner_ace is not None and owner_ace["mask"] & FILE_WRITE_DATA


def test_set_mode_round_trips(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetSdInfo)
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("run.sh"), b"#!/bin/sh\n")
    if "mode" not in c.query_security(d.path("run.sh"), info=0x4):
        with raises_status(S.STATUS_INVALID_PARAMETER):  # no mode over SMB: give a DACL
            c.set_security(d.path("run.sh"), mode=0o750)
        return
    c.set_security(d.path("run.sh"), mode=0o750)
    assert os.stat(d.host("run.sh")).st_mode & 0o7777 == 0o750
    sd = c.query_security(d.path("run.sh"))
    assert sd["mode"] & 0o7777 == 0o750
    everything = FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE
    assert sd["dacl"] == [
        {"type": 0, "flags": 0, "mask": everything, "sid": sd["owner"]},
        {
            "type": 0,
            "flags": 0,
            "mask": FILE_GENERIC_READ | FILE_GENERIC_EXECUTE,
            "sid": sd["group"],
        },
    ]


def test_set_owner_and_group(backend: ConformanceBackend) -> None:
    """chown to the ids the file already has succeeds (as root also to others); the owner on
    disk is what the query says."""
    backend.requires(Routine.MRxSetSdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    sd = c.query_security(d.path("f.txt"))
    if "mode" not in sd:
        c.set_security(d.path("f.txt"), owner=sd["owner"], group=sd["group"])
        again = c.query_security(d.path("f.txt"), info=0x3)
        assert (again["owner"], again["group"]) == (sd["owner"], sd["group"])
        return
    if os.geteuid() != 0 or backend.kind not in ("local", "sftp"):
        c.set_security(d.path("f.txt"), owner=sd["owner"], group=sd["group"])
        return
    c.set_security(d.path("f.txt"), owner="S-1-22-1-4242", group="S-1-22-2-4343")
    st = os.stat(d.host("f.txt"))
    assert (st.st_uid, st.st_gid) == (4242, 4343)
    again = c.query_security(d.path("f.txt"), info=0x3)
    assert (again["owner"], again["group"]) == ("S-1-22-1-4242", "S-1-22-2-4343")


@pytest.mark.parametrize(
    "why",
    ["deny ACE", "another SID", "inheritance flags", "DELETE right", "partial read mask"],
)
def test_inexpressible_dacl_is_refused(backend: ConformanceBackend, why: str) -> None:
    """A POSIX backend refuses a DACL a mode cannot say (STATUS_INVALID_PARAMETER, with the
    reason), and leaves the mode alone; an SMB server keeps ACLs of its own and decides."""
    backend.requires(Routine.MRxSetSdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    sd = c.query_security(d.path("f.txt"))
    if "mode" not in sd:
        pytest.skip(f"{backend.kind}: the server keeps real ACLs; nothing to refuse here")
    owner = sd["owner"]
    base = {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ, "sid": owner}
    bad = {
        "deny ACE": {**base, "type": 1, "sid": EVERYONE},
        "another SID": {**base, "sid": "S-1-5-21-1-2-3-1001"},
        "inheritance flags": {**base, "flags": 0x3},
        "DELETE right": {**base, "mask": FILE_GENERIC_READ | 0x00010000},
        "partial read mask": {**base, "mask": FILE_READ_DATA},
    }[why]
    dacl = [bad] if why != "deny ACE" else [base, bad]
    before = os.stat(d.host("f.txt")).st_mode
    with pytest.raises(NtStatusError) as info:
        c.set_security(d.path("f.txt"), dacl=dacl)
    assert info.value.status == S.STATUS_INVALID_PARAMETER, info.value
    assert "mode" in (info.value.strerror or "") or "POSIX" in (info.value.strerror or "")
    assert os.stat(d.host("f.txt")).st_mode == before


def test_security_on_a_directory(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    sd = c.query_security(d.unc)
    assert sd["owner"].startswith("S-1-")
    if "mode" in sd:
        assert stat.S_ISDIR(sd["mode"])


def test_security_needs_an_open_handle(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    with opened(c, d.path("f.txt"), access=READ_CONTROL) as h:
        assert c.query_security(h.fobx)["owner"]
    with raises_status(S.STATUS_INVALID_HANDLE):
        c.query_security(h.fobx)


def test_unregistered_security_answers_not_implemented(backend: ConformanceBackend) -> None:
    if backend.registers(Routine.MRxQuerySdInfo):
        pytest.skip(f"{backend.kind} registers MRxQuerySdInfo")
    d = backend.fresh_dir()
    backend.client.write_bytes(d.path("f.txt"), b"x")
    with raises_status(S.STATUS_NOT_IMPLEMENTED):
        backend.client.query_security(d.path("f.txt"))


@pytest.mark.parametrize(
    "fields",
    [
        {"owner": "not-a-sid"},
        {"dacl": [{"type": 0, "flags": 0, "sid": EVERYONE}]},  # no mask
        {"dacl": "everyone"},
        {"dacl": [{"type": 0, "flags": 0, "mask": -1, "sid": EVERYONE}]},
    ],
    ids=["bad-sid", "ace-without-mask", "dacl-not-a-list", "negative-mask"],
)
def test_malformed_security_is_refused(backend: ConformanceBackend, fields: dict[str, Any]) -> None:
    backend.requires(Routine.MRxSetSdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    info = (0x1 if "owner" in fields else 0) | (0x4 if "dacl" in fields else 0)
    with opened(c, d.path("f.txt"), access=WRITE_SECURITY | READ_CONTROL) as h:
        before = c.query_security(h.fobx)
        with raises_status(S.STATUS_INVALID_PARAMETER):
            c.run(rq.set_security(h.fobx, info, fields, 10_000))
        assert c.query_security(h.fobx) == before


def test_an_ace_for_another_sid(backend: ConformanceBackend) -> None:
    """An allow ACE for a SID that is neither owner, group nor Everyone: a POSIX backend cannot
    hold it (STATUS_INVALID_PARAMETER, mode unchanged); an SMB server gets it as given (Samba
    keeps it as a POSIX ACL entry and reads it back)."""
    backend.requires(Routine.MRxSetSdInfo)
    backend.requires(Routine.MRxQuerySdInfo)
    d = backend.fresh_dir()
    c = backend.client
    c.write_bytes(d.path("f.txt"), b"x")
    sd = c.query_security(d.path("f.txt"))
    other = "S-1-22-1-4242"
    dacl = [
        {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ | FILE_GENERIC_WRITE, "sid": sd["owner"]},
        {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ, "sid": other},
    ]
    before = os.stat(d.host("f.txt")).st_mode
    if "mode" in sd:
        with raises_status(S.STATUS_INVALID_PARAMETER):
            c.set_security(d.path("f.txt"), dacl=dacl)
        assert os.stat(d.host("f.txt")).st_mode == before
        return
    c.set_security(d.path("f.txt"), dacl=dacl)
    granted = _ace_for(c.query_security(d.path("f.txt"), info=0x4), other)
    assert granted is not None and granted["mask"] & FILE_READ_DATA, "the ACE did not arrive"
    assert not granted["mask"] & FILE_WRITE_DATA
