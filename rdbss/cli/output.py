"""What the command prints: results as text or JSON on stdout, errors as text or JSON on stderr,
the exit codes, and the human renderings of attributes, times and sizes (pure functions)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rdbss.wire.constants import FileAttributes
from rdbss.wire.status import NtStatus, NtStatusError, status_from_errno, status_name

#: Exit codes (documented in ``rdbss --help`` and docs/cli.md).
EXIT_OK = 0
EXIT_ERROR = 1  # the operation failed: the NTSTATUS says why
EXIT_USAGE = 2  # bad command line or configuration
EXIT_NOT_RUNNING = 3  # ``daemon status``/``daemon reload``: no daemon runs

EXIT_CODES_HELP = """exit codes:
  0  success
  1  the operation failed (the message names the NTSTATUS)
  2  usage or configuration error
  3  daemon status / daemon reload: the daemon is not running"""


class UsageError(Exception):
    """The command line asks for something impossible (exit 2, STATUS_INVALID_PARAMETER)."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """A result: ``data`` as JSON with --json, else the text (nothing when it is empty)."""
    if wants_json(args):
        print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        rendered = text()
        if rendered:
            print(rendered)


def error_fields(exc: BaseException) -> tuple[int, str]:
    """The NTSTATUS and message of a failure: the status a daemon answered, or the one a
    Windows server would give for a local OSError (its errno)."""
    if isinstance(exc, NtStatusError):
        return exc.status, exc.strerror or status_name(exc.status)
    if isinstance(exc, TimeoutError):
        return int(NtStatus.STATUS_IO_TIMEOUT), str(exc) or "timed out"
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        if exc.filename is not None:
            text = f"{exc.filename}: {text}"
        return int(status_from_errno(exc.errno)), text
    return int(NtStatus.STATUS_UNSUCCESSFUL), str(exc)


def report_error(json_errors: bool, status: int, message: str, text: str | None = None) -> None:
    """One error on stderr: ``{"status", "code", "message"}`` with --json, else one line
    (``text`` when given, else the NTSTATUS name, its value and the message)."""
    if json_errors:
        payload = {"status": status_name(status), "code": status, "message": message}
        print(json.dumps(payload, ensure_ascii=False), file=sys.stderr)
    elif text is not None:
        print(text, file=sys.stderr)
    else:
        print(f"rdbss: {status_name(status)} (0x{status:08X}): {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- renderings
def attribute_names(value: int) -> str:
    """FILE_ATTRIBUTE_* bits as names: ``READONLY|ARCHIVE``; ``NONE`` for 0; bits without a
    name as hex."""
    names = [flag.name for flag in FileAttributes if flag.value and value & flag.value]
    known = 0
    for flag in FileAttributes:
        known |= flag.value
    if value & ~known:
        names.append(f"0x{value & ~known:X}")
    return "|".join(n for n in names if n) or "NONE"


def human_time(ns: int) -> str:
    """POSIX nanoseconds as local time with the zone, to the nanosecond; ``-`` for 0 (a time
    the backend does not keep)."""
    if not ns:
        return "-"
    seconds, fraction = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, UTC).astimezone()
    return f"{when:%Y-%m-%d %H:%M:%S}.{fraction:09d} {when:%z}"


def short_time(ns: int) -> str:
    """Local time to the minute, for listings."""
    if not ns:
        return "-"
    return f"{datetime.fromtimestamp(ns / 1e9, UTC).astimezone():%Y-%m-%d %H:%M}"


def human_size(size: int) -> str:
    """Bytes in binary units: ``512 B``, ``7.8 KiB``, ``5.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
