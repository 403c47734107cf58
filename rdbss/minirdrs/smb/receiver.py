"""The receiver thread of an SMB connection: smbprotocol's own loop (``Connection.
_process_message_thread``), with each answer's header read by ``struct`` and its signature
checked on the bytes received (MS-SMB2 3.2.5.1.3), where smbprotocol builds a header object
field by field and packs it again to sign it.

An answer to a request packed by packed.py gets an ``AnswerHeader`` (the fields read once, the
message bytes after the header); any other answer gets smbprotocol's ``SMB2HeaderResponse`` as
before, since smbprotocol's own code reads it. Everything else is smbprotocol's loop: credits
granted, the pre-authentication hashes of a negotiate and a session setup, the async id of a
pending answer, the echo that keeps an idle connection open, and on any failure the error kept
for the next caller, the connection closed and every waiter woken. A lost session's answers are
taken without a signature check, as ``_Connection.session_gone`` says.
"""

from __future__ import annotations

import binascii
import logging
import struct
from typing import Any

from smbprotocol.connection import SMB2Echo, SMB2TransformHeader
from smbprotocol.exceptions import SMBConnectionClosed, SMBException
from smbprotocol.header import Commands, NtStatus, SMB2HeaderResponse

from rdbss.minirdrs.smb.packed import SentHeader, Value

log = logging.getLogger("rdbss.smb")

_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")  # MS-SMB2 2.2.1.2, an answer's header
_NAMES = (
    "protocol_id",
    "structure_size",
    "credit_charge",
    "status",
    "command",
    "credit_response",
    "flags",
    "next_command",
    "message_id",
    "reserved",
    "tree_id",
    "session_id",
    "signature",
)
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_SERVER_TO_REDIR = 0x00000001
_ASYNC = 0x00000002
_SIGNED = 0x00000008
_NO_MESSAGE_ID = 0xFFFFFFFFFFFFFFFF


class AnswerHeader:
    """An answer's header as smbprotocol's code reads one (``header["status"].get_value()``,
    ``header["data"].get_value()``: the message after the header)."""

    __slots__ = ("_fields", "_raw")

    def __init__(self, fields: tuple[Any, ...], raw: bytes) -> None:
        self._fields = fields
        self._raw = raw

    def __getitem__(self, name: str) -> Value:
        if name == "data":
            return Value(self._raw[64:])
        return Value(self._fields[_INDEX[name]])


def verify(conn: Any, raw: bytes | bytearray, fields: tuple[Any, ...], session_id: int) -> None:
    """smbprotocol's ``verify_signature`` on the bytes received (``fields``: their header)."""
    status, command, flags, message_id = fields[3], fields[4], fields[6], fields[8]
    if conn.session_gone(status, session_id):
        return
    if (
        message_id == _NO_MESSAGE_ID
        or not flags & _SIGNED
        or status == NtStatus.STATUS_PENDING
        or command == Commands.SMB2_SESSION_SETUP
    ):
        return
    session = conn.session_table.get(session_id, None)
    if session is None:
        raise SMBException(f"Failed to find session {session_id} for message verification")
    expected = conn._generate_signature(
        raw, session.signing_key, message_id, bool(flags & _SERVER_TO_REDIR), command
    )
    actual = fields[12]
    if actual != expected:
        raise SMBException(
            "Server message signature could not be verified: "
            f"{binascii.hexlify(actual).decode()} != {binascii.hexlify(expected).decode()}"
        )


def _keep_alive(conn: Any) -> None:
    """No answer for the receive timeout: an echo per session, or the connection is dead when
    the last such echo is still unanswered (smbprotocol's rule)."""
    for request in conn.outstanding_requests.values():
        if (
            request.response is None
            and request.message["command"].get_value() == Commands.SMB2_ECHO
            and request.message["reserved"].get_value() == 1
        ):
            raise SMBConnectionClosed(
                "Connection timed out. Server did not respond within timeout."
            )
    for sid in list(conn.session_table):
        request = conn.send(SMB2Echo(), sid=sid)
        request.message["reserved"] = 1


def _deliver(conn: Any, raw: bytes | bytearray, encrypted: bool) -> None:
    """Hand one answer (``raw``: its header and message) to the request waiting for it."""
    fields = _HEADER.unpack_from(raw)
    status, command, credits, flags, message_id = (
        fields[3],
        fields[4],
        fields[5],
        fields[6],
        fields[8],
    )
    request = conn.outstanding_requests[message_id]
    session_id = fields[11] if command == Commands.SMB2_SESSION_SETUP else request.session_id
    header: Any
    if isinstance(request.message, SentHeader):  # small: its own bytes, not the receive buffer
        header = AnswerHeader(fields, bytes(raw))
    else:
        header = SMB2HeaderResponse()
        header.unpack(raw)
    if not encrypted:
        verify(conn, raw, fields, session_id)
    if credits == 0 and not conn.supports_multi_credit:
        credits = 1
    with conn.sequence_lock:
        conn.sequence_window["high"] += credits
    if command == Commands.SMB2_NEGOTIATE:
        conn.preauth_integrity_hash_value.append(raw)
    elif (
        command == Commands.SMB2_SESSION_SETUP
        and status == NtStatus.STATUS_MORE_PROCESSING_REQUIRED
    ):
        conn.preauth_integrity_session_hash_value[message_id].append(raw)
    with request.response_event_lock:
        if flags & _ASYNC:
            request.async_id = raw[32:40]
        request.response = header
        request.response_event.set()
        if request.message["reserved"].get_value() == 1:  # an echo of _keep_alive
            conn.outstanding_requests.pop(message_id, None)


def run(conn: Any) -> None:
    """The receiver thread's loop, until the connection closes or fails."""
    try:
        while True:
            try:
                message = conn.transport.recv(conn._receive_timeout)
            except TimeoutError as exc:
                try:
                    _keep_alive(conn)
                except SMBConnectionClosed as closed:
                    raise closed from exc
                continue
            if not message:
                return
            encrypted = message[:4] == b"\xfdSMB"
            if encrypted:
                transform = SMB2TransformHeader()
                transform.unpack(message)
                message = conn._decrypt(transform)
            while True:
                next_command = int.from_bytes(message[20:24], "little")
                if not next_command:  # the last (or only) answer: the rest of the buffer
                    _deliver(conn, message, encrypted)
                    break
                _deliver(conn, message[:next_command], encrypted)
                message = message[next_command:]
    except Exception as exc:
        log.exception("SMB receive worker died (outstanding=%d)", len(conn.outstanding_requests))
        conn._t_exc = exc  # raised to the next caller of send or receive
        conn.disconnect(False)
    finally:
        for request in conn.outstanding_requests.values():  # no waiter left behind
            request.response_event.set()
