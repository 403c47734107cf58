"""The statuses the network mini-redirectors give: one errno table for every backend, a name for
every status a server can send, and the set-up deadline (rdbss/minirdrs/common/setup.py)."""

from __future__ import annotations

import errno
import socket

import httpx
import pytest
import smbprotocol.header

from rdbss.minirdrs.common.setup import ANSWER_MARGIN_S, NEGOTIATE, SetupDeadline, setup_timeout_ms
from rdbss.minirdrs.sftp.errors import connect_status
from rdbss.minirdrs.smb.config import ServerConfig
from rdbss.minirdrs.smb.link import SmbLink
from rdbss.minirdrs.webdav.errors import connect_status as _connect_status
from rdbss.wire import IrpMj, NtStatus, RxContext
from rdbss.wire.status import (
    AUTH_ERRORS,
    NtStatusError,
    error_for_status,
    network_status_from_errno,
    status_name,
)

S = NtStatus


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (errno.ENETUNREACH, S.STATUS_NETWORK_UNREACHABLE),
        (errno.EHOSTUNREACH, S.STATUS_NETWORK_UNREACHABLE),
        (errno.ENETDOWN, S.STATUS_NETWORK_UNREACHABLE),
        (errno.EHOSTDOWN, S.STATUS_NETWORK_UNREACHABLE),
        (errno.ECONNREFUSED, S.STATUS_REMOTE_NOT_LISTENING),
        (errno.ETIMEDOUT, S.STATUS_IO_TIMEOUT),
        (errno.ECONNRESET, S.STATUS_CONNECTION_DISCONNECTED),
        (errno.EPIPE, S.STATUS_CONNECTION_DISCONNECTED),
        (errno.EPROTO, S.STATUS_UNEXPECTED_NETWORK_ERROR),
        (None, S.STATUS_UNEXPECTED_NETWORK_ERROR),
    ],
)
def test_network_errno_table(err: int | None, status: NtStatus) -> None:
    assert network_status_from_errno(err) == status


@pytest.mark.parametrize("err", [errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED])
def test_every_backend_maps_a_connect_errno_alike(err: int) -> None:
    cause = OSError(err, "nope")
    expected = network_status_from_errno(err)
    # webdav: httpx wraps the socket's error
    wrapped = httpx.ConnectError("connect failed")
    wrapped.__cause__ = cause
    assert _connect_status(wrapped) == expected
    # sftp: asyncssh lets the OSError through
    assert connect_status(cause)[0] == expected
    # smb: smbprotocol raises ValueError from the OSError
    link = SmbLink(ServerConfig("s", "127.0.0.1", 445, "u"), 1.0)
    try:
        failure = ValueError("Failed to connect")
        failure.__cause__ = cause
        assert link._connect_error(failure).status == expected
    finally:
        link.close()


def test_a_host_name_that_does_not_resolve_is_bad_network_path() -> None:
    assert connect_status(socket.gaierror(-2, "Name or service not known"))[0] == (
        S.STATUS_BAD_NETWORK_PATH
    )


def test_every_status_smbprotocol_knows_has_a_name() -> None:
    values = [
        value
        for name, value in vars(smbprotocol.header.NtStatus).items()
        if name.startswith("STATUS_") and isinstance(value, int)
    ]
    assert len(values) > 50
    unnamed = [f"0x{v:08X}" for v in values if status_name(v).startswith("0x")]
    assert unnamed == []


def test_account_restrictions_are_named_permission_errors() -> None:
    for value in (0xC0000070, 0xC000006F, 0xC0000248, 0xC0000193, 0xC0000224):
        assert not status_name(value).startswith("0x")
        assert NtStatus(value) in AUTH_ERRORS
        assert isinstance(error_for_status(value, "x"), PermissionError)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_setup_deadline_keeps_the_answer_margin() -> None:
    assert setup_timeout_ms(6.0) == 6250
    clock = Clock()
    ctx = RxContext(request_id=1, major=IrpMj.CREATE, timeout_ms=setup_timeout_ms(6.0))
    setup = SetupDeadline.of(ctx, "srv", clock=clock)
    assert setup.remaining() == pytest.approx(6.0)
    clock.now += 5.0
    assert setup.enter(NEGOTIATE) == pytest.approx(1.0)
    setup.check()  # in time
    clock.now += 1.0
    with pytest.raises(NtStatusError) as ei:
        setup.check()  # finished, but too late
    assert ei.value.status == S.STATUS_IO_TIMEOUT
    assert "'srv'" in str(ei.value) and NEGOTIATE in str(ei.value)
    with pytest.raises(NtStatusError):
        setup.enter("authenticate")
    assert ANSWER_MARGIN_S < 0.5
