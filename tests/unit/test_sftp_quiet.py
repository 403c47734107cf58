"""asyncssh's debug1 messages in the SFTP mini-redirector's process (rdbss/minirdrs/sftp/
quiet.py): nothing is built while DEBUG is off, and what DEBUG shows is unchanged."""

from __future__ import annotations

import logging

import asyncssh.logging
import pytest

from rdbss.minirdrs.sftp.quiet import check_level_first


class Untextable:
    """A log argument that fails the test if it is ever turned into text."""

    def __str__(self) -> str:
        raise AssertionError("a debug message was built with DEBUG off")


def test_a_debug1_message_is_not_built_while_debug_is_off() -> None:
    check_level_first()
    sftp_log = asyncssh.logging.sftp_logger
    base = logging.getLogger("asyncssh")
    old = base.level
    base.setLevel(logging.WARNING)
    try:
        sftp_log.debug1("names: %s", [Untextable()])  # asyncssh turns list items into text
    finally:
        base.setLevel(old)


def test_debug1_still_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    check_level_first()
    check_level_first()  # once is enough: not wrapped twice
    with caplog.at_level(logging.DEBUG, logger="asyncssh"):
        asyncssh.logging.sftp_logger.debug1("Received %s", [b"one", "two"])
    assert "Received one,two" in caplog.text
