"""Structured logs: one line per event, the process name on every line.

Two line formats (``[daemon] log_format`` or ``rdbss daemon run --log-format``):

* ``logfmt`` (default): ``ts=... level=info proc=core pid=12 logger=rdbss.core msg="..." req=...``;
  a value is quoted when it holds a space, ``=``, ``"`` or nothing, with ``\\``, ``"`` and line
  breaks escaped, so every event is exactly one line (a traceback too, in ``exc=``).
* ``json``: one JSON object per line with the same keys.

An event about a request carries ``req`` (the request id, from RxContext.origin), ``share`` and
``status`` (the NTSTATUS name) as their own keys: pass them as ``extra={"req": ...}``.

Under systemd (``$JOURNAL_STREAM`` names this stderr) each line starts with its syslog
priority (``<3>`` error ... ``<7>`` debug), which journald turns into the entry's priority.
With ``[daemon] log_file`` every process also appends to that file; the supervisor rotates it
by size (:func:`rotate`) and the processes follow (WatchedFileHandler reopens a moved file).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdbss.config import Config

#: the keys an event may carry besides the message (``extra=``), in output order
EVENT_KEYS = ("req", "share", "status", "peer", "server")

#: syslog priorities by logging level (sd-daemon(3) prefixes)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}
_CRITICAL_PRIORITY = 2


def logfmt_value(value: object) -> str:
    """One logfmt value: bare when it can be, else double-quoted with escapes."""
    text = str(value)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


class EventFormatter(logging.Formatter):
    """A record as one logfmt or JSON line (see the module docstring)."""

    def __init__(self, process: str, fmt: str = "logfmt", journald: bool = False) -> None:
        super().__init__()
        self.process = process
        self.json = fmt == "json"
        self.journald = journald

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "proc": self.process,
            "pid": record.process or os.getpid(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in EVENT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.json:
            line = json.dumps(fields, default=str, ensure_ascii=False)
        else:
            line = " ".join(f"{k}={logfmt_value(v)}" for k, v in fields.items())
        if self.journald:
            priority = _PRIORITY.get(record.levelno, _CRITICAL_PRIORITY)
            line = f"<{priority}>{line}"
        return line


def under_journald(stream: Any = None) -> bool:
    """True when ``stream`` (stderr) is the journal's stream: ``$JOURNAL_STREAM`` is its
    ``device:inode`` (systemd.exec(5))."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def setup_logging(process: str, config: Config | None = None, level: str = "info") -> None:
    """Log this process's events to stderr and, when configured, to the log file."""
    fmt = config.log_format if config is not None else "logfmt"
    level = config.log_level if config is not None else level
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(process, fmt, journald=under_journald(sys.stderr)))
    handlers = [handler]
    if config is not None and config.log_file:
        path = Path(config.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        to_file.setFormatter(EventFormatter(process, fmt))
        handlers.append(to_file)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it is ``max_bytes`` or larger: ``path.1`` ... ``path.N`` (oldest
    dropped); with ``backups`` 0 the file is emptied instead. True when it rotated. Processes
    that log to it reopen the new file on their next event (WatchedFileHandler)."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    if backups == 0:
        os.truncate(path, 0)
        return True
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
    return True
