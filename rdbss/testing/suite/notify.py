"""Change notification (LowIo NOTIFY_CHANGE_DIRECTORY) beyond a create through rdbss: changes
made directly on the server (behind its back, in its folder on disk), changes between two
notifies of a handle, the completion filter, the whole-tree watch, cleanup, the deadline, and a
pending notify never holding up its connection. Local, SFTP and WebDAV poll the listing; SMB uses
the server's own CHANGE_NOTIFY."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest

from rdbss import requests as rq
from rdbss.aio import AsyncClient
from rdbss.client import Client
from rdbss.testing.suite.harness import (
    Background,
    ConformanceBackend,
    Scratch,
    opened,
    raises_status,
    wait_until,
)
from rdbss.wire import Access, CreateOptions, LowIoOp, NtStatus, NtStatusError, Routine

S = NtStatus
LOWIO = Routine.MRxLowIOSubmit
NAMES = 0x1 | 0x2  # FILE_NOTIFY_CHANGE_FILE_NAME | DIR_NAME
SIZE_AND_WRITE = 0x8 | 0x10  # FILE_NOTIFY_CHANGE_SIZE | LAST_WRITE
DIR = {"access": Access.FILE_LIST_DIRECTORY, "options": CreateOptions.FILE_DIRECTORY_FILE}
WATCH_S = 10.0


def _pending_watch(
    backend: ConformanceBackend, client: Client, fobx: int, flt: int = NAMES, **kw: Any
) -> Background:
    """Start a watch on a thread and wait until it is pending in the core."""
    before = backend.pending()
    watch = Background(lambda: client.watch(fobx, flt, timeout=WATCH_S, **kw))
    wait_until(lambda: watch.done or backend.pending() > before, 5.0, "the notify to be pending")
    if watch.done:
        pytest.fail(f"the notify completed before any change: {watch.result(1.0)!r}")
    return watch


def _keep_changing(watch: Background, change: Any, deadline_s: float = 8.0) -> list[str]:
    """Make changes (``change(i)`` returns the name it made) until the watch completes: a server
    may take a moment to arm its watch."""
    made: list[str] = []
    end = time.monotonic() + deadline_s
    for i in itertools.count():
        made.append(change(i))
        step_end = time.monotonic() + 1.5
        while not watch.done and time.monotonic() < step_end:
            time.sleep(0.02)
        if watch.done or time.monotonic() >= end:
            return made
    return made


def _names(found: list[dict[str, Any]] | None) -> set[str]:
    assert found is not None, "the notify answered STATUS_NOTIFY_ENUM_DIR for a small change"
    return {str(c["name"]) for c in found}


def _direct(d: Scratch, name: str) -> Path:
    return d.host(name)


def test_a_file_written_directly_on_the_server_is_seen(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    with backend.connect() as watcher, opened(watcher, d.unc, **DIR) as h:
        watch = _pending_watch(backend, watcher, h.fobx)

        def change(i: int) -> str:
            _direct(d, f"direct-{i}.txt").write_bytes(b"behind the server's back")
            return f"direct-{i}.txt"

        made = _keep_changing(watch, change)
        found = watch.result(WATCH_S)
        assert _names(found) & set(made), f"{found} names none of {made}"
        assert all(c["action"] == "added" for c in found or []), found


def test_changes_between_two_notifies_are_not_lost(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    with backend.connect() as watcher, opened(watcher, d.unc, **DIR) as h:
        watch = _pending_watch(backend, watcher, h.fobx)
        _keep_changing(watch, lambda i: _touch(d, f"first-{i}.txt"))
        watch.result(WATCH_S)
        # no notify pending now: this removal must still be reported by the next one
        _direct(d, "first-0.txt").unlink()
        time.sleep(1.0)
        found = watcher.watch(h.fobx, NAMES, timeout=WATCH_S)
        assert {"action": "removed", "name": "first-0.txt"} in (found or []), found


def _put(d: Scratch, name: str) -> str:
    d.put(name, b"x")
    return name


def _touch(d: Scratch, name: str) -> str:
    """A new file, made at once (written beside the folder, then renamed into it): a poll can
    never see it half-written (empty, then one byte: a size change). The watch may still have
    taken its first look after the file came: the core counts a notify as pending once it sent
    it, before the mini-redirector looked."""
    target = _direct(d, name)
    staging = target.parent.parent / f".staging-{name}"
    staging.write_bytes(b"x")
    os.replace(staging, target)
    return name


def test_the_filter_selects_what_completes(backend: ConformanceBackend) -> None:
    """A size / last-write watch ignores a new name and completes when a file grows."""
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    d.put("grows.txt", b"1")
    with backend.connect() as watcher, opened(watcher, d.unc, **DIR) as h:
        watch = _pending_watch(backend, watcher, h.fobx, SIZE_AND_WRITE)
        _touch(d, "new-name.txt")
        time.sleep(2.5)  # more than one poll interval: a name-only change must not complete it
        assert not watch.done, f"a size watch completed on a new name: {watch.result(1.0)}"
        _keep_changing(watch, lambda i: _grow(d, "grows.txt", i))
        found = watch.result(WATCH_S)
        assert "grows.txt" in _names(found), found
        assert "new-name.txt" not in _names(found), found


def _grow(d: Scratch, name: str, i: int) -> str:
    """Rewrite ``name`` longer with the backend's independent client (Samba's inotify
    mapping reports an on-disk write only as an attribute change, so for SMB this goes through
    a separate SMB session; for the others it is the folder on disk)."""
    d.put(name, b"more" * (i + 2))
    return name


def test_a_tree_watch_sees_deeper_changes(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    backend.client.mkdir(d.path("sub"))
    with backend.connect() as watcher, opened(watcher, d.unc, **DIR) as h:
        watch = _pending_watch(backend, watcher, h.fobx, tree=True)
        # the independent client: Samba watches only the folder itself with inotify, deeper
        # levels through its own notifications
        made = _keep_changing(watch, lambda i: _put(d, f"sub\\deep-{i}.txt"))
        found = watch.result(WATCH_S)
        assert {f"sub\\{name.split(chr(92))[-1]}" for name in made} & _names(found), found


def test_closing_the_handle_ends_a_pending_notify(backend: ConformanceBackend) -> None:
    """Cleanup of the handle completes its pending notify with STATUS_NOTIFY_CLEANUP, at once
    (the asyncio client: the close goes out while the notify is in flight on one socket)."""
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()

    async def main() -> tuple[int, float]:
        async with AsyncClient(backend.runtime_dir, timeout=WATCH_S) as c:
            h = await c.create(d.unc, **DIR)
            waiting = asyncio.ensure_future(c.run(rq.notify(h.fobx, NAMES, 10_000)))
            await asyncio.sleep(0.5)
            assert not waiting.done(), "the notify completed without a change"
            start = time.monotonic()
            await c.close_handle(h.fobx)
            try:
                await asyncio.wait_for(waiting, WATCH_S)
            except NtStatusError as exc:
                return exc.status, time.monotonic() - start
            return S.STATUS_SUCCESS, time.monotonic() - start

    status, took = asyncio.run(main())
    assert status == S.STATUS_NOTIFY_CLEANUP, hex(status)
    assert took < 3.0, f"the notify ended {took:.1f} s after the close"


def test_a_pending_notify_does_not_hold_up_its_connection(backend: ConformanceBackend) -> None:
    """Other requests to the same server (the same connection in the mini-redirector) answer
    while a notify is pending there."""
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    d.put("data.bin", b"0123456789")
    c = backend.client
    with backend.connect() as watcher, opened(watcher, d.unc, **DIR) as h:
        watch = _pending_watch(backend, watcher, h.fobx)
        start = time.monotonic()
        for _ in range(5):
            assert c.read_bytes(d.path("data.bin")) == b"0123456789"
            assert "data.bin" in c.listdir(d.unc)
        elapsed = time.monotonic() - start
        assert not watch.done, "the notify completed without a change"
        assert elapsed < 5.0, f"10 requests took {elapsed:.1f} s beside a pending notify"
        _keep_changing(watch, lambda i: _touch(d, f"end-{i}.txt"))
        watch.result(WATCH_S)


def test_a_notify_without_changes_times_out(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    with opened(backend.client, d.unc, **DIR) as h:
        start = time.monotonic()
        with raises_status(S.STATUS_IO_TIMEOUT):
            backend.client.watch(h.fobx, NAMES, timeout=2.5)
        assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("case", ["a file", "an empty filter"])
def test_bad_notifies_are_refused(backend: ConformanceBackend, case: str) -> None:
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    d.put("f.txt", b"x")
    c = backend.client
    target = d.path("f.txt") if case == "a file" else d.unc
    kw = {} if case == "a file" else DIR
    with opened(c, target, **kw) as h, raises_status(S.STATUS_INVALID_PARAMETER):
        c.watch(h.fobx, NAMES if case == "a file" else 0, timeout=5.0)


def test_unregistered_notify_answers_not_implemented(backend: ConformanceBackend) -> None:
    if backend.registers(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY):
        pytest.skip(f"{backend.kind} registers NOTIFY_CHANGE_DIRECTORY")
    d = backend.fresh_dir()
    with opened(backend.client, d.unc, **DIR) as h, raises_status(S.STATUS_NOT_IMPLEMENTED):
        backend.client.watch(h.fobx, NAMES, timeout=5.0)
