"""The packed small-file requests (rdbss/minirdrs/smb/packed.py) and the receiver that reads
their answers (receiver.py) sign and check signatures as each dialect does: HMAC-SHA256 up to
SMB 2.1, AES-CMAC for SMB 3.0 and 3.0.2, and the negotiated algorithm of SMB 3.1.1, against a
Samba that requires signing and offers no dialect above the one tested. Every request a user
makes of a small file, a stat and a listing works, and the errors are the open file's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.requests import SMALL_READ_BYTES
from rdbss.wire import NtStatus
from tests.conformance.backend_smb import smb_config, write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import SambaServer, require_or_skip

S = NtStatus


@pytest.fixture(scope="module", params=["SMB2_10", "SMB3_00", "SMB3_02", "SMB3_11"])
def signed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Client, Path]]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base = tmp_path_factory.mktemp(f"smb-{request.param}")
    top = f"    server max protocol = {request.param}\n"
    with SambaServer(base / "smb", server_signing="mandatory", extra_global=top) as samba:
        config = smb_config(samba, write_password_file(base / "pw", samba.password))
        with running_daemon(config) as daemon, daemon.client(timeout=10.0) as client:
            yield client, samba.share_path


@pytest.mark.parametrize("size", [0, 1, SMALL_READ_BYTES, SMALL_READ_BYTES + 1, 300_000])
def test_small_files_stats_and_listings_signed(signed: tuple[Client, Path], size: int) -> None:
    client, folder = signed
    data = bytes(i % 249 for i in range(size))
    name = f"signed-{size}-ü.bin"
    path = rf"\\sambatest\share\{name}"
    assert client.write_bytes(path, data) == size
    assert (folder / name).read_bytes() == data
    assert client.read_bytes(path) == data
    assert client.stat(path).size == size
    assert name in client.listdir(r"\\sambatest\share")


def test_a_long_listing_and_errors_signed(signed: tuple[Client, Path]) -> None:
    client, folder = signed
    (folder / "many").mkdir()
    names = sorted(f"n{i:04d}" for i in range(1100))
    for name in names:
        (folder / "many" / name).write_bytes(b"")
    assert sorted(client.listdir(r"\\sambatest\share\many")) == names
    for rel, status in (
        ("nothing.txt", S.STATUS_OBJECT_NAME_NOT_FOUND),
        (r"nowhere\x.txt", S.STATUS_OBJECT_PATH_NOT_FOUND),
        ("many", S.STATUS_FILE_IS_A_DIRECTORY),
    ):
        path = rf"\\sambatest\share\{rel}"
        with pytest.raises(OSError) as alone:
            client.open(path, "rb")
        with pytest.raises(OSError) as packed:
            client.read_bytes(path)
        assert getattr(alone.value, "status", None) == status
        assert getattr(packed.value, "status", None) == status
