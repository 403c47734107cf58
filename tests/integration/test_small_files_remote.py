"""Whole small files over SFTP (OpenSSH), SMB (Samba) and WebDAV (wsgidav) through a real
daemon: ``read_bytes``/``write_bytes`` go out as one compound message, come back byte-exact
at the edges of the compound's window, and meet each error as the open-file way does."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss import requests as rq
from rdbss.client import Client
from rdbss.testing.backend import sftp_config, smb_config, webdav_config, write_password_file
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SambaServer, SshServer, WebDavServer
from tests.integration.test_small_files import count_sent, old_read, old_write, outcome

W = rq.SMALL_READ_BYTES


@contextlib.contextmanager
def _server(proto: str, base: Path) -> Iterator[tuple[str, str]]:
    """The daemon configuration for a server of ``proto`` and the UNC name of a folder on it."""
    if proto == "sftp":
        with SshServer(base / "ssh") as ssh:
            folder = ssh.root_dir / "small"
            folder.mkdir()
            yield sftp_config(ssh, {"small": folder}), r"\\sshtest\small"
    elif proto == "smb":
        with SambaServer(base / "smb") as smb:
            password_file = write_password_file(base / "smb-password", smb.password)
            yield smb_config(smb, password_file), rf"\\sambatest\{smb.share_name}"
    else:
        with WebDavServer(base / "dav") as dav:
            (dav.root_dir / "small").mkdir()
            password_file = write_password_file(base / "dav-password", dav.password)
            yield webdav_config(dav, password_file), r"\\davtest\small"


@pytest.fixture(scope="module", params=["sftp", "smb", "webdav"])
def remote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Client, str]]:
    try:
        server = _server(request.param, tmp_path_factory.mktemp(request.param))
        config, unc = server.__enter__()
    except Exception as exc:  # a server this host cannot run
        pytest.skip(f"{request.param} server: {exc}")
    try:
        with running_daemon(extra_config=config) as daemon, daemon.client(timeout=30) as c:
            yield c, unc
    finally:
        server.__exit__(None, None, None)


def test_small_files_round_trip_in_one_message(
    remote: tuple[Client, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, unc = remote
    sent = count_sent(c, monkeypatch)
    for size in (0, 1, W - 1, W, W + 1, 1 << 20):
        data = os.urandom(size)
        path = unc + rf"\s{size}.bin"
        c.write_bytes(path, b"old content, longer than some " * 3000)
        sent.clear()
        assert c.write_bytes(path, data) == size
        assert len(sent) == 1 or size > (256 << 10), size
        sent.clear()
        assert c.read_bytes(path) == data, size
        assert len(sent) == (1 if size < W else 2), size  # a longer file: once more, whole
        assert old_read(c, path) == data


@pytest.mark.parametrize("size", [(256 << 10) + 1, 3 << 20])
def test_a_compound_of_a_transfer_past_one_server_request_and_its_close(
    remote: tuple[Client, str], size: int
) -> None:
    """A create, a READ or WRITE longer than the server takes in one request (a pipelined
    transfer on SFTP, several requests on SMB) and the close, as one compound: the close comes
    after the transfer, whose bytes all arrive."""
    c, unc = remote
    path = unc + rf"\big{size}.bin"
    data = os.urandom(size)
    assert rq.write_file_result(c.compound(rq.write_file_items(path, data, 30_000))) == size
    assert old_read(c, path) == data
    items = rq.read_file_items(path, 30_000, size + 1)
    assert rq.read_file_result(c.compound(items)) == data


def test_small_file_errors_are_the_open_file_ways(remote: tuple[Client, str]) -> None:
    c, unc = remote
    c.mkdir(unc + r"\a_dir", exist_ok=True)
    missing, no_dir, a_dir = unc + r"\missing.txt", unc + r"\no_dir\missing.txt", unc + r"\a_dir"
    for path in (missing, no_dir, a_dir):
        new = outcome(lambda: c.read_bytes(path))  # noqa: B023
        assert isinstance(new, tuple), path
        assert new == outcome(lambda: old_read(c, path)), path  # noqa: B023
    for path in (no_dir, a_dir):
        new = outcome(lambda: c.write_bytes(path, b"x" * 10))  # noqa: B023
        assert isinstance(new, tuple), path
        assert new == outcome(lambda: old_write(c, path, b"x" * 10)), path  # noqa: B023
