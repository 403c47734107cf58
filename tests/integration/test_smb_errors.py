"""The seed's network and authentication statuses, each from a real situation against a real
Samba, through a real daemon:

- STATUS_DOWNGRADE_DETECTED: the server offers only SMB 2.0.2 while the configuration asks for
  ``min_dialect = "3.0"`` or for encryption (which needs SMB 3);
- STATUS_INVALID_WORKSTATION / STATUS_ACCOUNT_DISABLED: account restrictions on the server
  (``net sam set workstations``, ``pdbedit -c [D]``), named end to end;
- STATUS_USER_SESSION_DELETED: the server ends the session (a new session of the same user
  naming it as its PreviousSessionId, as a client does after it restarted); the next write
  reports it and the request after goes over a new connection, while a stat is sent again
  over a new session and succeeds;
- STATUS_NETWORK_CREDENTIAL_CONFLICT: a share configured for another user on a server whose
  connection is in use (and, with none in use, the connection made again as that user).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rdbss.client import Client
from rdbss.wire import NtStatus, NtStatusError
from tests.conformance.backend_smb import write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import SambaServer, find_binary, require_or_skip

S = NtStatus
HELPER_TIMEOUT_S = 30.0
OLD_PROTOCOL = "    server min protocol = SMB2_02\n    server max protocol = SMB2_02\n"


@dataclass
class Servers:
    daemon: Daemon
    main: SambaServer


def _samba_tool(name: str, *args: str) -> str:
    binary = find_binary(name)
    if binary is None:
        require_or_skip([name], f"Samba's {name}")
    assert binary is not None
    done = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=HELPER_TIMEOUT_S, check=True
    )
    return done.stdout


def _server_table(name: str, samba: SambaServer, password_file: Path, extra: str = "") -> str:
    return f"""
[minirdr.servers.{name}]
host = "{samba.host}"
port = {samba.port}
username = "{samba.user}"
password_file = "{password_file}"
{extra}"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base = tmp_path_factory.mktemp("smb-errors")
    user_map = base / "users.map"
    user_map.write_text("root = alice\n")  # alice logs on as root (one Unix account is enough)
    with (
        SambaServer(base / "main", encrypt_share=True) as main,
        SambaServer(base / "old", extra_global=OLD_PROTOCOL) as old,
        SambaServer(base / "ws") as ws,
        SambaServer(base / "disabled") as disabled,
        SambaServer(base / "mapped", extra_global=f"    username map = {user_map}\n") as mapped,
    ):
        # account restrictions, kept in each server's own passdb
        _samba_tool(
            "net", "sam", "set", "workstations", ws.user, "NOSUCHPC", "-s", str(ws.conf_path)
        )
        _samba_tool(
            "pdbedit", "-s", str(disabled.conf_path), "-r", "-u", disabled.user, "-c", "[D]"
        )
        other = write_password_file(base / "other-pw", "not-tried")
        header = '\n[[minirdr]]\nname = "smb"\nkind = "smb"\ntimeout = 5.0\n'
        config = header + "".join(
            _server_table(name, samba, write_password_file(base / name, samba.password), extra)
            for name, samba, extra in (
                (
                    "sambatest",
                    main,
                    f'[minirdr.servers.sambatest.shares.secure]\nusername = "alice"\n'
                    f'password_file = "{other}"\n',
                ),
                ("smbold", old, 'min_dialect = "3.0"\n'),
                ("smboldcrypt", old, "encrypt = true\n"),
                ("smbws", ws, ""),
                ("smbdisabled", disabled, ""),
                (
                    "smbalice",
                    mapped,
                    f'[minirdr.servers.smbalice.shares.share]\nusername = "alice"\n'
                    f'password_file = "{write_password_file(base / "alice", mapped.password)}"\n',
                ),
                (
                    "smbalicebad",
                    mapped,
                    f'[minirdr.servers.smbalicebad.shares.share]\nusername = "alice"\n'
                    f'password_file = "{other}"\n',
                ),
            )
        )  # fmt: skip
        with running_daemon(config) as daemon:
            yield Servers(daemon, main)


@pytest.fixture
def client(servers: Servers) -> Iterator[Client]:
    with servers.daemon.client(timeout=15.0) as c:
        yield c


def _failure(fn: Any) -> NtStatusError:
    with pytest.raises(NtStatusError) as ei:
        fn()
    return ei.value


@pytest.mark.parametrize(
    ("server", "said"), [("smbold", "min_dialect"), ("smboldcrypt", "encrypt")]
)
def test_a_negotiate_below_what_is_required_is_downgrade_detected(
    client: Client, server: str, said: str
) -> None:
    exc = _failure(lambda: client.stat(rf"\\{server}\share"))
    assert exc.status == S.STATUS_DOWNGRADE_DETECTED, exc
    assert exc.status_name == "STATUS_DOWNGRADE_DETECTED"
    assert said in (exc.strerror or ""), exc


@pytest.mark.parametrize(
    ("server", "status"),
    [("smbws", S.STATUS_INVALID_WORKSTATION), ("smbdisabled", S.STATUS_ACCOUNT_DISABLED)],
)
def test_account_restrictions_reach_the_client_named(
    client: Client, server: str, status: NtStatus
) -> None:
    exc = _failure(lambda: client.stat(rf"\\{server}\share"))
    assert exc.status == status, exc
    assert exc.status_name == status.name  # never a bare 0xC0000070
    assert isinstance(exc, PermissionError)


def test_a_session_the_server_ended_is_reported_then_rebuilt(
    servers: Servers, client: Client
) -> None:
    unc = r"\\sambatest\share\session.txt"
    client.write_bytes(unc, b"kept")
    (ours,) = servers.main.session_ids()  # the daemon's session, the only one
    servers.main.end_session(ours)
    # a write may not be sent twice (model/idempotent.py): the status reaches the client
    exc = _failure(lambda: client.write_bytes(unc, b"lost?"))
    assert exc.status == S.STATUS_USER_SESSION_DELETED, (exc, servers.daemon.log()[-3000:])
    assert client.read_bytes(unc) == b"kept"  # over a new connection and session
    assert ours not in servers.main.session_ids()
    # a stat that meets an ended session is sent again over a new one instead
    (again,) = servers.main.session_ids()
    servers.main.end_session(again)
    assert client.stat(unc).size == 4
    assert again not in servers.main.session_ids()


def test_another_user_on_a_server_in_use_is_a_credential_conflict(
    servers: Servers, client: Client
) -> None:
    client.write_bytes(r"\\sambatest\share\in-use.txt", b"busy")  # root's session, in use
    exc = _failure(lambda: client.stat(r"\\sambatest\secure"))  # configured for alice
    assert exc.status == S.STATUS_NETWORK_CREDENTIAL_CONFLICT, exc
    assert "alice" in (exc.strerror or "") and "root" in (exc.strerror or ""), exc
    assert client.read_bytes(r"\\sambatest\share\in-use.txt") == b"busy"  # the first goes on


def test_a_share_for_another_user_on_an_idle_server_logs_on_as_that_user(
    client: Client,
) -> None:
    """The server's connection is made as root; the share is configured for alice and nothing
    else of that server is connected, so the connection is made again as alice: with alice's
    password the share works, with a wrong one it is alice's logon that fails."""
    client.write_bytes(r"\\smbalice\share\alice.txt", b"as alice")
    assert client.read_bytes(r"\\smbalice\share\alice.txt") == b"as alice"
    exc = _failure(lambda: client.stat(r"\\smbalicebad\share"))
    assert exc.status == S.STATUS_LOGON_FAILURE, exc


def test_a_small_read_and_a_listing_meeting_an_ended_session(
    servers: Servers, client: Client
) -> None:
    """A whole small file's read and a listing (each one compound) meeting a session the
    server ended: answered over a new session, or failed with the session's status, never a
    wrong answer or a handle left open."""
    client.mkdir(r"\\sambatest\share\ended", exist_ok=True)
    unc = r"\\sambatest\share\ended\small.txt"
    client.write_bytes(unc, b"small")
    before = client.status()["handles"]
    for call, want in (
        (lambda: client.read_bytes(unc), b"small"),
        (lambda: client.listdir(r"\\sambatest\share\ended"), ["small.txt"]),
        (lambda: client.stat(unc).size, 5),
    ):
        (ours,) = servers.main.session_ids()
        servers.main.end_session(ours)
        try:
            got = call()
        except NtStatusError as exc:
            assert exc.status == S.STATUS_USER_SESSION_DELETED, exc
            got = call()
        assert got == want
        assert ours not in servers.main.session_ids()
    assert client.status()["handles"] == before
