"""packed.py's requests are the bytes smbprotocol packs for the same request, and its CREATE
answer parser reads the fields smbprotocol reads."""

from __future__ import annotations

from typing import Any

import pytest
from smbprotocol.open import (
    ImpersonationLevel,
    SMB2CloseRequest,
    SMB2CreateRequest,
    SMB2CreateResponse,
    SMB2QueryInfoRequest,
    SMB2QueryInfoResponse,
    SMB2ReadRequest,
    SMB2ReadResponse,
    SMB2WriteRequest,
    SMB2WriteResponse,
)

from rdbss.minirdrs.smb import packed
from rdbss.minirdrs.smb.structures import query_info_buffer, read_buffer, write_count
from rdbss.wire.status import NtStatus, NtStatusError

FILE_ID = bytes(range(16))


def _structure(cls: type[Any], **fields: Any) -> bytes:
    message = cls()
    for name, value in fields.items():
        message[name] = value
    data: bytes = message.pack()
    return data


@pytest.mark.parametrize("path", ["", "a.txt", "dir\\sub\\é.bin"])
def test_create_is_smbprotocols(path: str) -> None:
    body = packed.create_body(path, 0x120089, 0x80, 7, 3, 0x40)
    assert body.data == _structure(
        SMB2CreateRequest,
        impersonation_level=ImpersonationLevel.Impersonation,
        desired_access=0x120089,
        file_attributes=0x80,
        share_access=7,
        create_disposition=3,
        create_options=0x40,
        buffer_path=path.encode("utf-16-le") if path else b"\x00\x00",
    )
    assert body.structure is SMB2CreateRequest and body.charge == 1


def test_close_query_read_write_are_smbprotocols() -> None:
    assert packed.close_body(FILE_ID).data == _structure(SMB2CloseRequest, file_id=FILE_ID)
    assert packed.query_info_body(FILE_ID, 1, 18, 65536).data == _structure(
        SMB2QueryInfoRequest,
        info_type=1,
        file_info_class=18,
        output_buffer_length=65536,
        file_id=FILE_ID,
    )
    read = packed.read_body(FILE_ID, 4096, 65537)
    assert read.charge == 2
    assert read.data == _structure(
        SMB2ReadRequest,
        length=65537,
        offset=4096,
        minimum_count=0,
        file_id=FILE_ID,
        padding=b"\x50",
    )
    write = packed.write_body(FILE_ID, 12, b"payload")
    assert write.charge == 1
    assert write.data == _structure(
        SMB2WriteRequest, length=7, offset=12, file_id=FILE_ID, buffer=b"payload"
    )


class _Header:
    """A response header as smbprotocol's receiver gives one: ``["data"].get_value()``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __getitem__(self, name: str) -> packed.Value:
        assert name == "data"
        return packed.Value(self.data)


def test_answers_read_as_smbprotocol_reads_them() -> None:
    create = SMB2CreateResponse()
    create["create_action"] = 2
    create["file_id"] = FILE_ID
    create["end_of_file"] = 77
    assert packed.parse_create(create.pack()) == (2, FILE_ID, 0)
    info = SMB2QueryInfoResponse()
    info["buffer"] = b"x" * 100
    assert query_info_buffer(_Header(info.pack())) == b"x" * 100
    read = SMB2ReadResponse()
    read["data_offset"] = 80
    read["buffer"] = b"data"
    assert read_buffer(_Header(read.pack())) == b"data"
    written = SMB2WriteResponse()
    written["count"] = 4096
    assert write_count(_Header(written.pack())) == 4096


def test_short_answers_are_invalid_network_responses() -> None:
    with pytest.raises(NtStatusError) as caught:
        packed.parse_create(b"\x59\x00")
    assert caught.value.status == NtStatus.STATUS_INVALID_NETWORK_RESPONSE
    with pytest.raises(NtStatusError) as caught:
        read_buffer(_Header(b"\x11\x00"))
    assert caught.value.status == NtStatus.STATUS_INVALID_NETWORK_RESPONSE
