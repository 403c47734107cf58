"""Structured logs: one line per event, ``key=value`` pairs, the process name on every line.
Request ids travel in RxContext.origin and appear as ``req=`` wherever a request is logged."""

from __future__ import annotations

import logging
import os
import sys
import time


class _Formatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
            f"proc={self.process} pid={os.getpid()} logger={record.name} "
            f"msg={record.getMessage()!r}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(process: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
