"""Whole small files through a real daemon: ``read_bytes`` and ``write_bytes`` (blocking and
asyncio clients) and fsspec's ``cat_file``/``pipe_file`` send a create, a read or write and a
close as ONE compound message; larger files go the way of an open file. Byte-exact at the
edges of the compound's window, and each error the same as the open-file way's."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rdbss import requests as rq
from rdbss.aio import AsyncClient
from rdbss.client import SMALL_WRITE_BYTES, Client
from tests.daemon import Daemon

W = rq.SMALL_READ_BYTES
SIZES = [0, 1, W - 1, W, W + 1, 1 << 20]
WHOLE = rq.WHOLE_READ_BYTES  # the longest file read_bytes reads in two compounds


def unc(d: Daemon, *parts: str) -> str:
    return "\\".join([d.share, *parts])


def count_sent(c: Client, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The messages ``c`` sends to the daemon from now on (a compound is one)."""
    sent: list[Any] = []
    send = c._send

    def counting(ctx: Any, payload: Any) -> None:
        sent.append(ctx)
        send(ctx, payload)

    monkeypatch.setattr(c, "_send", counting)
    return sent


@pytest.fixture
def counted(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, list[Any]]]:
    """A client and the list of the messages it sends to the daemon."""
    with daemon.client() as c:
        yield c, count_sent(c, monkeypatch)


def old_read(c: Client, path: str) -> bytes:
    """The open-file way: create, reads, close."""
    with c.open(path, "rb", buffering=0) as f:
        return bytes(f.readall())


def old_write(c: Client, path: str, data: bytes) -> int:
    with c.open(path, "wb", buffering=0) as f:
        return int(f.write(data))


def outcome(call: Callable[[], Any]) -> tuple[str, int | None, int | None] | Any:
    """What a call returned, or its error as (type, errno, NTSTATUS)."""
    try:
        return call()
    except OSError as exc:
        return type(exc).__name__, exc.errno, getattr(exc, "status", None)


@pytest.mark.parametrize("size", [*SIZES, WHOLE, WHOLE + 1])
def test_read_bytes_is_one_message_for_a_small_file_and_byte_exact(
    daemon: Daemon, counted: tuple[Client, list[Any]], size: int
) -> None:
    c, sent = counted
    data = os.urandom(size)
    (daemon.share_dir / f"r{size}.bin").write_bytes(data)
    sent.clear()
    assert c.read_bytes(unc(daemon, f"r{size}.bin")) == data
    shape = [r.ctx.major for r in rq.read_file_items("x", 1)]
    if size < W:
        assert len(sent) == 1
        assert [i.major for i in sent[0].items] == shape
    elif size <= WHOLE:  # the window was full: read again whole, sized by the first create
        assert len(sent) == 2
        assert [i.major for i in sent[1].items] == shape
        assert sent[1].items[1].lowio.length == size + W
    else:  # too long for one message: through an open file
        assert len(sent) > 2


def test_read_bytes_of_a_file_that_grew_past_the_second_window(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file found longer than the first window, that grows by more than a window before the
    second compound, is read through an open file, whole."""
    path = daemon.share_dir / "grows.bin"
    path.write_bytes(os.urandom(2 * W))
    grown = os.urandom(5 * W)
    window = rq.whole_read_window

    def growing(outcomes: Any) -> int | None:
        path.write_bytes(grown)  # between the two compounds
        return window(outcomes)

    monkeypatch.setattr(rq, "whole_read_window", growing)
    with daemon.client() as c:
        assert c.read_bytes(unc(daemon, "grows.bin")) == grown


@pytest.mark.parametrize("size", SIZES)
def test_write_bytes_is_one_message_for_small_data_and_byte_exact(
    daemon: Daemon, counted: tuple[Client, list[Any]], size: int
) -> None:
    c, sent = counted
    data = os.urandom(size)
    (daemon.share_dir / f"w{size}.bin").write_bytes(b"longer old content " * 5000)
    sent.clear()
    assert c.write_bytes(unc(daemon, f"w{size}.bin"), data) == size
    assert (daemon.share_dir / f"w{size}.bin").read_bytes() == data
    if size <= SMALL_WRITE_BYTES:
        assert len(sent) == 1
    else:
        assert len(sent) > 1


def test_write_bytes_of_the_limit_and_one_more(
    daemon: Daemon, counted: tuple[Client, list[Any]]
) -> None:
    c, sent = counted
    for size, messages in ((SMALL_WRITE_BYTES, 1), (SMALL_WRITE_BYTES + 1, 3)):
        data = os.urandom(size)
        sent.clear()
        assert c.write_bytes(unc(daemon, "limit.bin"), data) == size
        assert len(sent) >= messages and (messages > 1 or len(sent) == 1)
        assert c.read_bytes(unc(daemon, "limit.bin")) == data


def _error_cases(daemon: Daemon) -> list[str]:
    (daemon.share_dir / "errs").mkdir(exist_ok=True)
    (daemon.share_dir / "errs" / "a_dir").mkdir(exist_ok=True)
    ro = daemon.share_dir / "errs" / "readonly.txt"
    if not ro.exists():
        ro.write_bytes(b"read only")
        ro.chmod(0o444)
    return [
        unc(daemon, "errs", "missing.txt"),
        unc(daemon, "errs", "no_dir", "missing.txt"),
        unc(daemon, "errs", "a_dir"),
        unc(daemon, "errs", "readonly.txt"),
        unc(daemon, "errs", "bad\x01name"),
        "\\\\nowhere\\share\\x.txt",
    ]


def test_read_bytes_errors_are_the_open_file_ways(daemon: Daemon) -> None:
    seen: set[Any] = set()
    with daemon.client() as c:
        for path in _error_cases(daemon):
            new = outcome(lambda: c.read_bytes(path))  # noqa: B023
            old = outcome(lambda: old_read(c, path))  # noqa: B023
            assert new == old, path
            seen.add(new if isinstance(new, tuple) else "ok")
        assert len(seen - {"ok"}) >= 3, seen  # several different errors met


def test_write_bytes_errors_are_the_open_file_ways(daemon: Daemon) -> None:
    seen: set[Any] = set()
    with daemon.client() as c:
        for path in _error_cases(daemon):
            for data in (b"", b"x" * 100):
                new = outcome(lambda: c.write_bytes(path, data))  # noqa: B023
                old = outcome(lambda: old_write(c, path, data))  # noqa: B023
                assert new == old, path
                seen.add(new if isinstance(new, tuple) else "ok")
        assert len(seen) >= 4, seen  # several different errors met
        there = unc(daemon, "errs", "there.txt")
        c.write_bytes(there, b"1")
        new = outcome(lambda: c.write_bytes(there, b"2", exclusive=True))
        assert new == outcome(lambda: c.open(there, "xb", buffering=0))
        assert new[0] == "NtFileExistsError"
        assert (daemon.share_dir / "errs" / "there.txt").read_bytes() == b"1"


@pytest.mark.parametrize("size", SIZES)
def test_the_asyncio_client_reads_and_writes_small_files_in_one_message(
    daemon: Daemon, size: int
) -> None:
    data = os.urandom(size)

    async def go() -> None:
        async with AsyncClient(daemon.runtime_dir, timeout=10) as c:
            exchanges: list[Any] = []
            exchange = c._exchange

            async def counting(msg: Any, payload: Any) -> Any:
                exchanges.append(msg)
                return await exchange(msg, payload)

            c._exchange = counting  # type: ignore[method-assign]
            assert await c.write_bytes(unc(daemon, f"a{size}.bin"), data) == size
            assert len(exchanges) == 1 or size > SMALL_WRITE_BYTES
            exchanges.clear()
            assert await c.read_bytes(unc(daemon, f"a{size}.bin")) == data
            assert len(exchanges) == (1 if size < W else 2)
            for path in _error_cases(daemon):
                new = await _aoutcome(c.read_bytes(path))
                with daemon.client() as blocking:
                    assert new == outcome(lambda: old_read(blocking, path)), path  # noqa: B023

    asyncio.run(go())
    assert (daemon.share_dir / f"a{size}.bin").read_bytes() == data


async def _aoutcome(call: Any) -> Any:
    try:
        return await call
    except OSError as exc:
        return type(exc).__name__, exc.errno, getattr(exc, "status", None)


def test_fsspec_cat_and_pipe_whole_files_in_one_message(
    daemon: Daemon, counted: tuple[Client, list[Any]]
) -> None:
    from rdbss.fsspec_fs import RdbssFileSystem

    c, sent = counted
    fs = RdbssFileSystem(runtime_dir=str(daemon.runtime_dir), skip_instance_cache=True)
    fs._client_obj, fs._client_pid = c, os.getpid()  # the counted client
    root = daemon.share.lstrip("\\").replace("\\", "/")
    for size in (0, 10, W + 1):
        data = os.urandom(size)
        sent.clear()
        fs.pipe_file(f"{root}/fs/deep/p{size}.bin", data)  # the parents are made
        assert fs.cat_file(f"{root}/fs/deep/p{size}.bin") == data
        assert fs.cat_file(f"{root}/fs/deep/p{size}.bin", start=1, end=5) == data[1:5]
        sent.clear()
        fs.pipe_file(f"{root}/fs/deep/p{size}.bin", data[::-1])
        assert fs.cat_file(f"{root}/fs/deep/p{size}.bin") == data[::-1]
        assert len(sent) == 2 or size >= W
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{root}/fs/deep/p10.bin", b"new", mode="create")
