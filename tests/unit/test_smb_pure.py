"""The pure parts of the SMB mini-redirector, without a server: its typed configuration, which
failures end a link and the status each answers, and the SMB2 structures it packs and parses."""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

import pytest
from smbprotocol.exceptions import SMBAuthenticationError, SMBConnectionClosed, SMBException
from smbprotocol.open import SMB2CloseRequest, SMB2CreateRequest

from rdbss.minirdrs.smb.config import DIALECTS, ServerConfig, SmbConfig, dialect_name
from rdbss.minirdrs.smb.packed import close_body, create_body
from rdbss.minirdrs.smb.status import connect_error, create_error, is_downgrade, link_failure
from rdbss.minirdrs.smb.structures import (
    FILETIME_EPOCH,
    RELATED_FILE_ID,
    filetime_to_ns,
    ns_to_filetime,
    pack_basic,
    pack_disposition,
    pack_rename,
    pack_size,
    parse_all_information,
    parse_directory_entries,
    parse_end_of_file,
    parse_volume,
    smb_file_info,
)
from rdbss.wire import CreateDisposition, NtStatus, NtStatusError

S = NtStatus
SERVER = {"host": "h", "username": "u"}

# ------------------------------------------------------------------------------ configuration


def test_defaults_and_servers_by_lower_case_name() -> None:
    config = SmbConfig.parse({"servers": {"One": SERVER}})
    assert (config.timeout, config.keepalive_interval) == (30.0, 30.0)
    server = config.servers["one"]
    assert (server.name, server.host, server.port, server.username) == ("One", "h", 445, "u")
    assert (server.encrypt, server.min_dialect, dict(server.shares)) == (False, 0, {})
    assert SmbConfig.parse({"timeout": 5, "keepalive_interval": 0}).keepalive_interval == 0.0


def test_a_server_table_becomes_its_record() -> None:
    table = {
        **SERVER,
        "port": 1445,
        "password_env": "PW",
        "encrypt": True,
        "min_dialect": "3.0.2",
        "shares": {"PayRoll": {"username": "bob", "password_file": "/pw"}},
    }
    server = ServerConfig.parse("s", table)
    assert (server.port, server.encrypt, server.min_dialect) == (1445, True, 0x0302)
    assert server.address == "h:1445"
    payroll = server.credentials_for("PAYROLL")
    assert (payroll.username, payroll.password_file) == ("bob", "/pw")
    assert server.credentials_for("other") == server.credentials
    assert server.credentials.password_env == "PW"
    assert payroll.same_user("BOB") and not payroll.same_user("u")


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"servers": {"s": {"username": "u"}}}, "host"),
        ({"servers": {"s": {**SERVER, "password": "a", "password_env": "B"}}}, "only one"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"keepalive_interval": -1}, "keepalive_interval"),
        ({"tiemout": 3}, "tiemout"),
        ({"servers": {"s": {**SERVER, "port": 70000}}}, "port"),
        ({"servers": {"s": {**SERVER, "min_dialect": "3.5"}}}, "min_dialect"),
        ({"servers": {"s": {**SERVER, "shares": {"x": {"usr": "b"}}}}}, "usr"),
        ({"servers": {"s": SERVER, "S": SERVER}}, "given twice"),
        ({"servers": {"": SERVER}}, "non-empty"),
        ({"servers": []}, "servers"),
    ],
)
def test_a_bad_configuration_is_refused_by_name(config: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words) as ei:
        SmbConfig.parse(config)
    assert str(ei.value).startswith("smb mini-redirector")


def test_a_server_must_be_a_table_and_its_password_stays_out_of_reprs() -> None:
    with pytest.raises(ValueError, match="must be a table"):
        ServerConfig.parse("s", "h")
    server = ServerConfig.parse("s", {**SERVER, "password": "s3cret"})
    assert "s3cret" not in repr(server) and "s3cret" not in repr(server.credentials)


def test_dialect_names() -> None:
    assert dialect_name(0x0311) == "3.1.1"
    assert dialect_name(0x0399) == "0x399"
    assert sorted(DIALECTS.values()) == list(DIALECTS.values())


# ------------------------------------------------------------------------------ statuses


@pytest.mark.parametrize(
    ("exc", "broken", "status"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), False, S.STATUS_CONNECTION_DISCONNECTED),
        (OSError(errno.EPIPE, "pipe"), False, S.STATUS_CONNECTION_DISCONNECTED),
        (SMBConnectionClosed("closed"), False, S.STATUS_CONNECTION_DISCONNECTED),
        (EOFError(), False, S.STATUS_CONNECTION_DISCONNECTED),
        (RuntimeError("whatever"), True, S.STATUS_CONNECTION_DISCONNECTED),
        (SMBException("Secure negotiate failed"), False, S.STATUS_DOWNGRADE_DETECTED),
        (SMBException("Connection timeout of 5 seconds"), False, S.STATUS_IO_TIMEOUT),
        (RuntimeError("a bug"), False, None),
        (OSError(errno.EACCES, "denied"), False, None),
    ],
)
def test_which_failures_end_a_link(exc: BaseException, broken: bool, status: int | None) -> None:
    error = link_failure(exc, "cannot read x", broken=broken, timeout=5.0)
    assert (error.status if error is not None else None) == status
    if error is not None:
        assert (error.strerror or "").startswith("cannot read x: ")


def _from(cause: BaseException) -> ValueError:
    failure = ValueError("Failed to connect")  # as smbprotocol raises it
    failure.__cause__ = cause
    return failure


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (SMBAuthenticationError("bad"), S.STATUS_LOGON_FAILURE),
        (_from(socket.gaierror(-2, "Name or service not known")), S.STATUS_BAD_NETWORK_PATH),
        (_from(ConnectionRefusedError(errno.ECONNREFUSED, "x")), S.STATUS_REMOTE_NOT_LISTENING),
        (_from(OSError(errno.EHOSTUNREACH, "x")), S.STATUS_NETWORK_UNREACHABLE),
        (TimeoutError(), S.STATUS_IO_TIMEOUT),
        (EOFError(), S.STATUS_CONNECTION_DISCONNECTED),
        (
            SMBException("encryption is required but the connection does not support it"),
            S.STATUS_DOWNGRADE_DETECTED,
        ),
        (SMBException("timeout waiting"), S.STATUS_IO_TIMEOUT),
        (RuntimeError("a bug"), S.STATUS_UNEXPECTED_NETWORK_ERROR),
        (NtStatusError(S.STATUS_ACCESS_DENIED), S.STATUS_ACCESS_DENIED),
    ],
)
def test_connect_errors(exc: BaseException, status: int) -> None:
    assert connect_error(exc, "cannot connect", 5.0).status == status


def test_downgrade_words_only_count_from_smbprotocol() -> None:
    assert is_downgrade(SMBException("secure negotiate failed"))
    assert not is_downgrade(RuntimeError("secure negotiate failed"))


def test_create_on_an_existing_name_is_a_collision_first() -> None:
    mismatch = NtStatusError(S.STATUS_FILE_IS_A_DIRECTORY, "x")
    assert create_error(mismatch, CreateDisposition.FILE_CREATE).status == (
        S.STATUS_OBJECT_NAME_COLLISION
    )
    assert create_error(mismatch, CreateDisposition.FILE_OPEN) is mismatch
    other = NtStatusError(S.STATUS_ACCESS_DENIED, "x")
    assert create_error(other, CreateDisposition.FILE_CREATE) is other


# ------------------------------------------------------------------------------ structures


def test_filetimes_keep_100_ns_and_zero_means_unknown() -> None:
    ns = 1_700_000_000_123_456_700
    assert filetime_to_ns(ns_to_filetime(ns)) == ns
    assert ns_to_filetime(0) == 0 and filetime_to_ns(0) == 0
    assert filetime_to_ns(FILETIME_EPOCH) == 0 and ns_to_filetime(100) == FILETIME_EPOCH + 1


def _filetime(seconds: int) -> int:
    return FILETIME_EPOCH + seconds * 10_000_000


def test_file_all_information() -> None:
    times = [_filetime(s) for s in (1, 2, 3, 4)]
    data = struct.pack(
        "<qqqqIIqqIBBHqIIqIII", *times, 0x20, 0, 4096, 10, 2, 1, 0, 0, 77, 0, 0, 0, 0, 0, 0
    )
    raw = parse_all_information(data + "name".encode("utf-16-le"))
    assert (raw.creation_time, raw.change_time) == (1_000_000_000, 4_000_000_000)
    assert (raw.attributes, raw.allocation_size, raw.size, raw.nlink) == (0x20, 4096, 10, 2)
    assert (raw.delete_pending, raw.directory, raw.file_id) == (True, False, 77)
    info = smb_file_info(raw, "a\\b")
    assert (info["name"], info["size"], info["nlink"], info["delete_pending"]) == (
        "a\\b",
        10,
        2,
        True,
    )
    with pytest.raises(NtStatusError) as ei:
        parse_all_information(data[:50])
    assert ei.value.status == S.STATUS_INVALID_NETWORK_RESPONSE


def _entry(name: str, attrs: int, size: int, last: bool) -> bytes:
    encoded = name.encode("utf-16-le")
    head = struct.Struct("<IIqqqqqqIIIIq")
    length = (head.size + len(encoded) + 7) // 8 * 8
    fixed = head.pack(
        0 if last else length, 0, *[_filetime(5)] * 4, size, 4096, attrs, len(encoded), 0, 0, 9
    )
    return (fixed + encoded).ljust(length, b"\0")


def test_directory_entries_follow_next_entry_offsets() -> None:
    data = _entry("dir", 0x10, 0, False) + _entry("f.txt", 0x20, 5, True)
    (d, dinfo), (f, finfo) = parse_directory_entries(data)
    assert (d, dinfo.directory, f, finfo.directory, finfo.size) == ("dir", True, "f.txt", False, 5)
    assert finfo.nlink is None and finfo.last_write_time == 5_000_000_000
    directory = smb_file_info(dinfo, "dir")
    assert (directory["size"], directory["allocation_size"], "nlink" in directory) == (0, 0, False)
    assert parse_directory_entries(b"") == []


def test_volume_and_end_of_file_buffers() -> None:
    full_size = struct.pack("<qqqII", 100, 40, 50, 8, 512)
    label = "Vol".encode("utf-16-le")
    volume_info = struct.pack("<qIIBx", 0, 1234, len(label), 0) + label
    fs_name = "NTFS".encode("utf-16-le")
    attribute = struct.pack("<IiI", 0x7, 255, len(fs_name)) + fs_name
    device = struct.pack("<II", 7, 0x20)
    result = parse_volume({7: full_size, 1: volume_info, 5: attribute, 4: device})
    assert result == {
        "total_bytes": 100 * 4096,
        "free_bytes": 50 * 4096,
        "avail_bytes": 40 * 4096,
        "bytes_per_sector": 512,
        "sectors_per_allocation_unit": 8,
        "serial": 1234,
        "label": "Vol",
        "fs_attributes": 7,
        "max_name_length": 255,
        "fs_name": "NTFS",
        "device_characteristics": 0x20,
    }
    assert parse_volume({}) == {}
    assert parse_end_of_file(struct.pack("<qqIBBH", 4096, 123, 1, 0, 0, 0)) == 123


def test_set_info_buffers() -> None:
    assert len(pack_basic((1, 2, 3, 4), 0x20)) == 40
    assert struct.unpack("<qqqqII", pack_basic((1, 2, 3, 4), 0x20)) == (1, 2, 3, 4, 0x20, 0)
    assert pack_size(5) == struct.pack("<q", 5)
    rename = pack_rename("a\\b", True)
    assert rename[0] == 1 and struct.unpack_from("<I", rename, 16)[0] == 6
    assert rename[20:] == "a\\b".encode("utf-16-le")
    assert (pack_disposition(True), pack_disposition(False)) == (b"\x01", b"\x00")


def _unpacked(cls: type[Any], data: bytes) -> Any:
    message = cls()
    message.unpack(data)
    return message


def test_create_and_close_requests() -> None:
    request = _unpacked(
        SMB2CreateRequest, create_body("a\\b", 0x1_0000_0080, 0, 0xF, 1, 0xFF00_0040).data
    )
    assert request["desired_access"].get_value() == 0x80
    assert request["share_access"].get_value() == 0x7
    assert request["create_options"].get_value() == 0x40
    assert request["buffer_path"].get_value() == "a\\b".encode("utf-16-le")
    root = _unpacked(SMB2CreateRequest, create_body("", 0x80, 0, 7, 1, 0).data)
    assert root["buffer_path"].get_value() == b"\0\0"
    close = _unpacked(SMB2CloseRequest, close_body(RELATED_FILE_ID).data)
    assert close["file_id"].get_value() == RELATED_FILE_ID
