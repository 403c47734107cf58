"""asyncssh's level-1 debug messages, checked before they are built.

asyncssh logs every SFTP request it sends and every answer it gets at ``debug1``, every name of
a READDIR answer too; ``SSHLogger.log`` turns each argument into text before the logger
checks its level, so with DEBUG off that work is thrown away: about an eighth of asyncssh's
CPU for a listing, and microseconds on every request. :func:`check_level_first` makes
``debug1`` look at the level first, in this process only (the SFTP mini-redirector's own);
what is logged at DEBUG is unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncssh.logging

_DEBUG = logging.DEBUG


def check_level_first() -> None:
    """Wrap ``SSHLogger.debug1`` once: nothing is built while DEBUG is off for its logger."""
    logger_class: Any = asyncssh.logging.SSHLogger
    original = logger_class.debug1
    if getattr(original, "_rdbss_level_first", False):
        return

    def debug1(self: Any, msg: str, *args: object, **kwargs: object) -> None:
        if self.isEnabledFor(_DEBUG):
            original(self, msg, *args, **kwargs)

    debug1._rdbss_level_first = True  # type: ignore[attr-defined]
    logger_class.debug1 = debug1
