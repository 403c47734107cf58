"""A small file's create, reads and close as one chain on the WebDAV mini-redirector
(rdbss/minirdrs/webdav/chain.py), in process against a real wsgidav server, run the way the
mini-redirector host runs a compound: every answer equals the same items' answers one by one
(statuses, create info, bytes), and the HTTP requests sent are counted."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rdbss.minirdrs.webdav.minirdr import WebDavMiniRdr
from rdbss.wire import (
    Access,
    Compound,
    CreateDisposition,
    CreateOptions,
    CreateParameters,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Routine,
    RxContext,
)
from rdbss.wire.constants import RxFlags
from tests.chains import Answer, run_compound
from tests.conformance.backend_webdav import webdav_config, write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import WebDavServer, require_or_skip

S = NtStatus
SERVER = "davchain"
_RELATED = int(RxFlags.RELATED)


class Dav:
    """The in-process mini-redirector, its share's folder on the server's disk, and the
    methods of the HTTP requests it sent since ``requests`` was last cleared."""

    def __init__(self, minirdr: WebDavMiniRdr, share: str, folder: Path) -> None:
        self.minirdr = minirdr
        self.share = share
        self.folder = folder
        self.requests: list[str] = []

    def connect(self) -> None:
        self.minirdr.create_srv_call(self.item(Routine.MRxCreateSrvCall))
        self.minirdr.create_v_net_root(self.item(Routine.MRxCreateVNetRoot))
        self.minirdr._server(SERVER).client.event_hooks["request"].append(self._sent)

    def _sent(self, request: httpx.Request) -> None:
        self.requests.append(request.method)

    def item(self, routine: Routine, **fields: Any) -> RxContext:
        return RxContext(0, 0, routine=routine, srv_call=SERVER, net_root=self.share, **fields)


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dav]:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    base = tmp_path_factory.mktemp("webdav-chain")
    share = "chain-" + secrets.token_hex(3)
    with WebDavServer(base / "dav") as server:
        folder = server.root_dir / share
        folder.mkdir()
        password_file = write_password_file(base / "pw", server.password)
        minirdr = WebDavMiniRdr(
            "webdav",
            {
                "timeout": 5.0,
                "servers": {
                    SERVER: {
                        "url": server.url,
                        "username": server.user,
                        "password_file": str(password_file),
                    }
                },
            },
        )
        try:
            dav = Dav(minirdr, share, folder)
            dav.connect()
            yield dav
        finally:
            minirdr.close()


def _read(dav: Dav, length: int = 64 << 10, offset: int = 0) -> RxContext:
    io = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
    return dav.item(Routine.MRxLowIOSubmit, lowio=io, flags=_RELATED)


def _close(dav: Dav) -> RxContext:
    return dav.item(Routine.MRxCloseSrvOpen, flags=_RELATED)


def _chain(
    dav: Dav,
    path: str,
    *related: RxContext,
    disposition: int = CreateDisposition.FILE_OPEN,
    options: int = CreateOptions.FILE_NON_DIRECTORY_FILE,
    chained: bool = True,
) -> list[Answer]:
    """A create of ``path`` for reading and ``related``, run as the host runs a compound,
    ``chained`` or item by item; each answer's status, information, result (less the SrvOpen
    number) and payload."""
    params = CreateParameters(
        desired_access=int(Access.GENERIC_READ), disposition=disposition, create_options=options
    )
    items = [dav.item(Routine.MRxCreate, path=path, create=params), *related]
    return run_compound(dav.minirdr, Compound(7, items), chained=chained)


def _both(dav: Dav, path: str, *related: RxContext, **how: Any) -> list[Answer]:
    """The chain's answers, checked equal to the same items' answers one by one."""
    alone = _chain(dav, path, *related, chained=False, **how)
    dav.requests.clear()
    chained = _chain(dav, path, *related, **how)
    assert chained == alone
    return chained


def test_a_small_read_of_a_file_seen_before_is_one_get(dav: Dav) -> None:
    data = os.urandom(5000)
    (dav.folder / "small.bin").write_bytes(data)
    dav.requests.clear()
    alone = _chain(dav, "small.bin", _read(dav), _close(dav), chained=False)
    assert dav.requests == ["PROPFIND", "GET"]
    dav.requests.clear()
    chained = _chain(dav, "small.bin", _read(dav), _close(dav))
    assert dav.requests == ["GET"]  # the PROPFIND before told the entry this GET's ETag names
    assert chained == alone
    assert [a[0] for a in chained] == [S.STATUS_SUCCESS] * 3
    assert chained[1][3] == data


def test_reads_at_offsets_and_past_the_end_answer_as_alone(dav: Dav) -> None:
    data = os.urandom(3000)
    (dav.folder / "parts.bin").write_bytes(data)
    reads = (_read(dav, 100, 2950), _read(dav, 10, 0), _read(dav, 10, 3000), _read(dav, 5, 9000))
    answers = _both(dav, "parts.bin", *reads, _close(dav))
    assert dav.requests == ["GET"]
    assert [a[0] for a in answers] == [S.STATUS_SUCCESS] * 3 + [S.STATUS_END_OF_FILE] * 2 + [0]
    assert (answers[1][3], answers[2][3]) == (data[2950:], data[:10])


def test_a_file_not_seen_before_or_changed_since_costs_a_propfind_too(dav: Dav) -> None:
    first, second = os.urandom(2000), os.urandom(2100)
    path = dav.folder / "cold.bin"
    path.write_bytes(first)
    dav.requests.clear()
    answers = _chain(dav, "cold.bin", _read(dav), _close(dav))
    assert dav.requests == ["GET", "PROPFIND"]  # the GET's bytes are the PROPFIND's version
    assert answers[1][3] == first
    path.write_bytes(second)  # a new ETag and size: the entry seen is stale
    answers = _both(dav, "cold.bin", _read(dav), _close(dav))
    assert answers[1][3] == second
    assert answers[0][2]["size"] == len(second)


def test_a_missing_file_answers_not_found_for_every_item(dav: Dav) -> None:
    answers = _both(dav, "none.bin", _read(dav), _close(dav))
    assert dav.requests == ["GET"]
    assert [a[0] for a in answers] == [S.STATUS_OBJECT_NAME_NOT_FOUND] * 3
    answers = _both(dav, "no-folder\\none.bin", _read(dav), _close(dav))
    assert [a[0] for a in answers] == [S.STATUS_OBJECT_PATH_NOT_FOUND] * 3


def test_a_directory_answers_as_alone(dav: Dav) -> None:
    (dav.folder / "sub").mkdir()
    answers = _both(dav, "sub", _read(dav), _close(dav))
    assert [a[0] for a in answers] == [S.STATUS_FILE_IS_A_DIRECTORY] * 3
    answers = _both(dav, "sub", _read(dav), _close(dav), options=0)
    assert [a[0] for a in answers] == [0, S.STATUS_INVALID_DEVICE_REQUEST, 0]
    assert answers[0][2]["directory"] is True


def test_creating_dispositions_are_not_taken_and_answer_as_alone(dav: Dav) -> None:
    (dav.folder / "exists.bin").write_bytes(b"here")
    answers = _both(
        dav, "exists.bin", _read(dav), _close(dav), disposition=CreateDisposition.FILE_CREATE
    )
    assert [a[0] for a in answers] == [S.STATUS_OBJECT_NAME_COLLISION] * 3
    assert "GET" not in dav.requests
    create = dav.item(
        Routine.MRxCreate,
        path="exists.bin",
        create=CreateParameters(
            desired_access=int(Access.GENERIC_READ),
            disposition=CreateDisposition.FILE_OVERWRITE_IF,
        ),
    )
    assert dav.minirdr.create_with_related(create, [_read(dav), _close(dav)], [None, None]) is None


def test_a_server_whose_gets_carry_no_etag_gets_no_chained_get(dav: Dav) -> None:
    (dav.folder / "untagged.bin").write_bytes(b"plain")
    server = dav.minirdr._server(SERVER)
    server.tagged_gets = False  # as after a GET without a strong ETag
    try:
        answers = _both(dav, "untagged.bin", _read(dav), _close(dav))
        assert dav.requests == ["PROPFIND", "GET"]
        assert answers[1][3] == b"plain"
    finally:
        server.tagged_gets = True


def test_read_bytes_through_the_daemon_after_a_stat_is_one_get(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A real daemon, a server logging each request: ``Client.read_bytes`` of a file stat'ed
    before sends the server one GET and no PROPFIND; a file not seen before costs both."""
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    base = tmp_path_factory.mktemp("webdav-chain-daemon")
    with WebDavServer(base / "dav", request_log=True) as server:
        server.root_dir.joinpath("small").mkdir()
        password_file = write_password_file(base / "pw", server.password)
        seen, cold = os.urandom(4096), os.urandom(3000)
        server.root_dir.joinpath("small", "seen.bin").write_bytes(seen)
        server.root_dir.joinpath("small", "cold.bin").write_bytes(cold)
        with (
            running_daemon(extra_config=webdav_config(server, password_file)) as daemon,
            daemon.client(timeout=10.0) as client,
        ):
            assert client.stat(r"\\davtest\small\seen.bin").size == len(seen)
            assert client.read_bytes(r"\\davtest\small\seen.bin") == seen
            assert client.read_bytes(r"\\davtest\small\cold.bin") == cold

        def count(method: str, name: str) -> int:
            return len(server.requests(method, f"/small/{name}"))

        assert (count("PROPFIND", "seen.bin"), count("GET", "seen.bin")) == (1, 1)  # the stat's
        assert (count("PROPFIND", "cold.bin"), count("GET", "cold.bin")) == (1, 1)


def test_read_bytes_of_a_file_just_written_through_rdbss_is_one_get(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A real daemon, a server logging each request: a file ``Client.write_bytes`` stored (a
    small one in one compound, a larger one streamed) is read back with one GET and no
    PROPFIND after the write's, the PUT's ETag naming the version; a file changed on the
    server since (another ETag) costs the PROPFIND again, and reads what the server holds."""
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    base = tmp_path_factory.mktemp("webdav-chain-written")
    with WebDavServer(base / "dav", request_log=True) as server:
        server.root_dir.joinpath("w").mkdir()
        password_file = write_password_file(base / "pw", server.password)
        small, larger, other = os.urandom(4096), os.urandom(300_000), os.urandom(5000)
        with (
            running_daemon(extra_config=webdav_config(server, password_file)) as daemon,
            daemon.client(timeout=10.0) as client,
        ):
            client.write_bytes(r"\\davtest\w\small.bin", small)
            client.write_bytes(r"\\davtest\w\larger.bin", larger)
            client.write_bytes(r"\\davtest\w\changed.bin", small)
            server.root_dir.joinpath("w", "changed.bin").write_bytes(other)
            before = {
                name: len(server.requests("PROPFIND", f"/w/{name}"))
                for name in ("small.bin", "larger.bin", "changed.bin")
            }
            assert client.read_bytes(r"\\davtest\w\small.bin") == small
            assert client.read_bytes(r"\\davtest\w\changed.bin") == other
            # the first 64 KiB in one GET; the rest through an open file (its own PROPFIND)
            assert client.read_bytes(r"\\davtest\w\larger.bin") == larger
            assert client.stat(r"\\davtest\w\small.bin").size == len(small)

        def after(name: str) -> tuple[int, int]:
            propfinds = len(server.requests("PROPFIND", f"/w/{name}")) - before[name]
            return propfinds, len(server.requests("GET", f"/w/{name}"))

        assert after("small.bin") == (1, 1)  # the GET; the PROPFIND is the stat's
        assert after("changed.bin") == (1, 1)
        assert after("larger.bin")[0] == 1
