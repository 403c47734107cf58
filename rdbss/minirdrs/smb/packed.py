"""The SMB2 requests of the small-file path (CREATE, QUERY_INFO, READ, WRITE, CLOSE: a stat, an
open, a small file read or written whole) packed with ``struct`` and sent on smbprotocol's
Connection, and the CREATE answer parsed the same way.

Why: smbprotocol builds every header and message as a tree of field objects, packs the header
twice when it signs, and takes a CREATE answer apart field by field; on a related compound of
four requests that was most of the mini-redirector's CPU per small file. Here each message is
one ``struct`` call, and the bytes are exactly what smbprotocol sends for the same request
(MS-SMB2 2.2.1.2 header, 2.2.13 CREATE, 2.2.15 CLOSE, 2.2.19 READ, 2.2.21 WRITE, 2.2.37
QUERY_INFO; tests/unit/test_smb_packed.py compares them). The rest of the exchange stays
smbprotocol's: message ids and credits under its sequence lock, its signing and encryption,
its pending-request table and its socket lock, and the receiver thread (receiver.py), which
matches the answers to the ``Request`` objects made here as to smbprotocol's own.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smbprotocol.connection import Request
from smbprotocol.exceptions import SMBException
from smbprotocol.header import Commands
from smbprotocol.open import (
    SMB2CloseRequest,
    SMB2CreateRequest,
    SMB2QueryInfoRequest,
    SMB2ReadRequest,
    SMB2WriteRequest,
)

from rdbss.minirdrs.smb.structures import SHARE_ALL
from rdbss.wire.status import NtStatus, NtStatusError

MAX_PAYLOAD = 65_536  # one credit's worth (MS-SMB2 3.1.5.2)
#: ImpersonationLevel "Impersonation" (MS-SMB2 2.2.13), what every open of this package asks.
IMPERSONATION = 2

_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")  # MS-SMB2 2.2.1.2, SYNC, 64 bytes
_NO_SIGNATURE = b"\x00" * 16
_FLAGS_RELATED = 0x00000004
_FLAGS_SIGNED = 0x00000008
_FLAGS_DFS = 0x10000000

_CREATE = struct.Struct("<HBBIQQIIIIIHHII")  # 56 bytes before the name
_CREATE_NAME_OFFSET = 64 + _CREATE.size
_CLOSE = struct.Struct("<HHI16s")
_READ = struct.Struct("<HBBIQ16sIIIHHB")
_WRITE = struct.Struct("<HHIQ16sIIHHI")
_WRITE_DATA_OFFSET = 0x70
_QUERY_INFO = struct.Struct("<HBBIHHIII16s")
_CREATE_ANSWER = struct.Struct("<HBBIQQQQQQII16sII")  # MS-SMB2 2.2.14, before the contexts


@dataclass(slots=True, frozen=True)
class Body:
    """One request's bytes after the header: its command, the smbprotocol structure it is
    (what smbprotocol rebuilds it as, should it send it again) and its credit charge."""

    command: int
    data: bytes
    structure: type[Any]
    charge: int = 1


def _charge(payload: int) -> int:
    return (max(0, payload - 1) // MAX_PAYLOAD) + 1


def create_body(
    path: str,
    desired_access: int,
    file_attributes: int,
    share_access: int,
    disposition: int,
    options: int,
) -> Body:
    """An SMB2 CREATE for ``path`` (share-relative, backslashes, "" for the root), no oplock
    and no create contexts; the share modes within SHARE_ALL, the options within the 24 bits
    MS-SMB2 2.2.13 defines."""
    name = path.encode("utf-16-le") if path else b""
    fixed = _CREATE.pack(
        57,
        0,
        0,
        IMPERSONATION,
        0,
        0,
        desired_access & 0xFFFFFFFF,
        file_attributes & 0xFFFFFFFF,
        share_access & SHARE_ALL,
        disposition,
        options & 0x00FFFFFF,
        _CREATE_NAME_OFFSET,
        len(name),
        0,
        0,
    )
    return Body(Commands.SMB2_CREATE, fixed + (name or b"\x00\x00"), SMB2CreateRequest)


def close_body(file_id: bytes) -> Body:
    return Body(Commands.SMB2_CLOSE, _CLOSE.pack(24, 0, 0, file_id), SMB2CloseRequest)


def read_body(file_id: bytes, offset: int, length: int) -> Body:
    """An SMB2 READ as smbprotocol's ``Open.read`` builds it (padding 0x50, minimum 0)."""
    data = _READ.pack(49, 0x50, 0, length, offset, file_id, 0, 0, 0, 0, 0, 0)
    return Body(Commands.SMB2_READ, data, SMB2ReadRequest, _charge(length))


def write_body(file_id: bytes, offset: int, data: bytes) -> Body:
    fixed = _WRITE.pack(49, _WRITE_DATA_OFFSET, len(data), offset, file_id, 0, 0, 0, 0, 0)
    return Body(Commands.SMB2_WRITE, fixed + data, SMB2WriteRequest, _charge(len(data)))


def query_info_body(file_id: bytes, info_type: int, info_class: int, output_length: int) -> Body:
    data = _QUERY_INFO.pack(41, info_type, info_class, output_length, 0, 0, 0, 0, 0, file_id)
    return Body(Commands.SMB2_QUERY_INFO, data, SMB2QueryInfoRequest)


class Value:
    """A header field as smbprotocol reads one: ``field.get_value()``, ``has_flag``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def get_value(self) -> Any:
        return self.value

    def has_flag(self, flag: int) -> bool:
        return bool(self.value & flag == flag)

    def __str__(self) -> str:
        return str(self.value)


class SentHeader:
    """A sent request's header, as smbprotocol's Connection and Request read it back
    (``request.message["message_id"].get_value()``, ``["data"]`` to rebuild the message)."""

    __slots__ = ("_fields",)

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> Value:
        return Value(self._fields[name])

    def __setitem__(self, name: str, value: Any) -> None:
        self._fields[name] = value


def send(conn: Any, session: Any, tree: Any, bodies: Sequence[Body], *, related: bool) -> list[Any]:
    """Send ``bodies`` as one message (a compound when more than one; ``related``: each after the
    first on the file of the one before) as smbprotocol's ``Connection.send_compound`` does:
    its Requests, to wait on with ``conn.receive``."""
    session_id = session.session_id
    tree_id = tree.tree_connect_id
    base_flags = _FLAGS_DFS if tree.is_dfs_share else 0
    key = session.signing_key if session.signing_required and session.signing_key else None
    if key is not None:
        base_flags |= _FLAGS_SIGNED
    multi_credit = conn.supports_multi_credit
    window = conn.sequence_window
    last = len(bodies) - 1
    chunks: list[bytes] = []
    requests: list[Any] = []
    for i, body in enumerate(bodies):
        if i == last:
            next_command, padding = 0, b""
        else:
            length = 64 + len(body.data)
            pad = -length % 8
            next_command, padding = length + pad, b"\x00" * pad
        charge = body.charge if multi_credit else 0
        with conn.sequence_lock:
            low = window["low"]
            if charge > window["high"] - low:
                raise SMBException(
                    f"Request requires {charge} credits but only {window['high'] - low} "
                    "credits are available"
                )
            window["low"] = low + (charge or 1)
        flags = base_flags | (_FLAGS_RELATED if related and i else 0)
        raw = (
            _HEADER.pack(
                b"\xfeSMB",
                64,
                charge,
                0,
                body.command,
                charge,
                flags,
                next_command,
                low,
                0,
                tree_id,
                session_id,
                _NO_SIGNATURE,
            )
            + body.data
            + padding
        )
        if key is not None:
            signature = conn._generate_signature(raw, key, low, False, body.command)
            raw = raw[:48] + signature + raw[64:]
        chunks.append(raw)
        header = SentHeader(
            message_id=low,
            command=body.command,
            tree_id=tree_id,
            session_id=session_id,
            reserved=0,
            data=body.data,
        )
        request = Request(header, body.structure, conn, session_id=session_id)
        conn.outstanding_requests[low] = request
        requests.append(request)
    if related:
        requests[0].related_ids = [r.message["message_id"].get_value() for r in requests[1:]]
    data = b"".join(chunks)
    if session.encrypt_data or tree.encrypt_data:
        data = conn._encrypt(data, session).pack()  # an SMB2 TRANSFORM_HEADER structure
    conn._check_worker_running()
    transmit(conn.transport, data)
    return requests


def transmit(transport: Any, data: bytes) -> None:
    """Send one SMB2 message on smbprotocol's Tcp transport as its ``send`` does (the Direct
    TCP header of MS-SMB2 2.1: the length as 4 bytes, big-endian), without building a
    structure for those 4 bytes."""
    if len(data) > transport.MAX_SIZE:
        raise ValueError(
            f"Data to be sent over Direct TCP size {len(data)} exceeds the max length allowed "
            f"{transport.MAX_SIZE}"
        )
    with transport._sock_lock:
        transport._sock.sendall(len(data).to_bytes(4, "big") + data)


def parse_create(data: bytes) -> tuple[int, bytes, int]:
    """(CreateAction, FileId, OplockLevel) of an SMB2 CREATE response (MS-SMB2 2.2.14)."""
    if len(data) < _CREATE_ANSWER.size:
        raise NtStatusError(NtStatus.STATUS_INVALID_NETWORK_RESPONSE, "short CREATE response")
    (_size, oplock, _flags, action, _ctime, _atime, _mtime, _chtime, _alloc, _eof, _attrs, _r,
     file_id, _offset, _length) = _CREATE_ANSWER.unpack_from(data)  # fmt: skip
    return action, file_id, oplock


def take_create(conn: Any, handle: Any, request: Any) -> None:
    """Receive the answer of a CREATE sent for ``handle`` (smbprotocol's Open, not opened yet)
    and open the handle with it as smbprotocol's ``Open.create`` does with its own answer (the
    file's times and sizes are left out: this package takes them from FileAllInformation);
    raises the SMBResponseException of a failed one."""
    action, file_id, oplock = parse_create(conn.receive(request)["data"].get_value())
    handle._connected = True
    handle.file_id = file_id
    handle.tree_connect.session.open_table[file_id] = handle
    handle.oplock_level = oplock
    handle.durable = False
    handle.resilient_handle = False
    handle.last_disconnect_time = 0
    handle.create_action = action
