"""A folder's entries in as few round trips as SFTP allows.

A listing is OPENDIR, READDIR until the server says it is at the end, then CLOSE (SFTP v3,
section 6.7). Sent one after the other, as asyncssh's ``readdir`` does, a folder of a few
entries costs four round trips. Here:

- the READDIRs go two at a time: the server answers them in order, so a folder whose entries
  fit in two of its batches (OpenSSH's: 100 entries) is one round trip, its second answer
  being the end (the end comes as the status EOF in v3, or as the v6 end flag);
- the CLOSE is sent without waiting for its answer: requests on the channel are processed in
  order, so whatever is sent after it finds the handle closed, and a failed close of a folder
  handle changes nothing for the listing.

The handle-level requests are asyncssh's own (``SFTPClientHandler.opendir``, ``readdir``,
``close``); a client without them (another asyncssh) lists through its public ``readdir``.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncssh

#: READDIRs in flight at once
READDIRS_AT_ONCE = 2
#: closes sent without waiting, kept until answered (asyncio keeps only weak references)
_closing: set[asyncio.Future[Any]] = set()


def handler_of(sftp: asyncssh.SFTPClient) -> Any | None:
    """The client's request handler when it has the handle-level requests used here."""
    handler = getattr(sftp, "_handler", None)
    if all(callable(getattr(handler, name, None)) for name in ("opendir", "readdir", "close")):
        return handler
    return None


def close_later(handler: Any, handle: bytes) -> None:
    """Send the CLOSE of ``handle`` without waiting for its answer."""
    future = asyncio.ensure_future(handler.close(handle))
    _closing.add(future)

    def forget(done: asyncio.Future[Any]) -> None:
        _closing.discard(done)
        if not done.cancelled():
            done.exception()  # retrieved: a failed close of a folder handle changes nothing

    future.add_done_callback(forget)


async def afolder(sftp: asyncssh.SFTPClient, remote: str) -> list[asyncssh.SFTPName]:
    """Every entry of the folder ``remote`` (``.`` and ``..`` included, as the server lists
    them), names decoded as the client's ``readdir`` decodes them. SFTPError as the server
    answered it."""
    handler = handler_of(sftp)
    if handler is None:
        return list(await sftp.readdir(remote))
    handle = await handler.opendir(sftp.compose_path(remote))
    names: list[asyncssh.SFTPName] = []
    try:
        at_end = False
        while not at_end:
            batches = [
                asyncio.ensure_future(handler.readdir(handle)) for _ in range(READDIRS_AT_ONCE)
            ]
            answers = await asyncio.gather(*batches, return_exceptions=True)
            for answer in answers:
                if isinstance(answer, asyncssh.SFTPEOFError):
                    at_end = True
                elif isinstance(answer, BaseException):
                    raise answer
                elif not at_end:
                    batch, at_end = answer
                    names.extend(batch)
    finally:
        close_later(handler, handle)
    for entry in names:  # (bytes from the handler, as the client's readdir decodes them)
        entry.filename = sftp.decode(cast(bytes, entry.filename))
        if entry.longname is not None:
            entry.longname = sftp.decode(cast(bytes, entry.longname))
    return names
