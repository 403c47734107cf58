"""Compound requests against a real daemon: many items in one message, each with its own
NTSTATUS, related items on the previous create's handle, items spanning several
mini-redirectors (one of them blocking, with injected faults) and connections being set up,
and the limits answered with a clear status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Iterator

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdbss import requests as rq
from rdbss.aio import AsyncClient
from rdbss.wire import (
    Access,
    Codec,
    Compound,
    CreateDisposition,
    CreateParameters,
    IrpMj,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    RxCompletion,
    RxContext,
    RxFlags,
    pack_frames,
)
from tests.daemon import Daemon, running_daemon

S = NtStatus
T = 10_000  # item deadline, ms


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    other = tmp_path_factory.mktemp("other")
    flaky = tmp_path_factory.mktemp("flaky")
    (other / "o.txt").write_bytes(b"other server")
    (flaky / "f.txt").write_bytes(b"flaky server")
    (flaky / "x.secret").write_bytes(b"hidden")
    extra = f"""
[[minirdr]]
name = "other"
kind = "local"
server = "other"
[minirdr.shares]
data = "{other}"

[[minirdr]]
name = "flaky"
kind = "faulty"
wraps = "local"
seed = 1
[minirdr.options]
server = "flaky"
[minirdr.options.shares]
data = "{flaky}"
[[minirdr.rules]]
routine = "MRxCreate"
path = "*.secret"
action = "status"
status = "STATUS_ACCESS_DENIED"
"""
    with running_daemon(extra) as d:
        yield d


def test_stat_many_gives_each_path_its_own_answer(daemon: Daemon) -> None:
    (daemon.share_dir / "s1.txt").write_bytes(b"12345")
    (daemon.share_dir / "sdir").mkdir()
    paths = [daemon.share + p for p in (r"\s1.txt", r"\missing", r"\sdir", r"\s1.txt")]
    with daemon.client() as c:
        infos = c.stat_many(paths)
        assert isinstance(infos[0], rq.FileInfo) and infos[0].size == 5
        assert isinstance(infos[1], FileNotFoundError)
        assert isinstance(infos[1], NtStatusError)
        assert infos[1].status == S.STATUS_OBJECT_NAME_NOT_FOUND
        assert isinstance(infos[2], rq.FileInfo) and infos[2].is_dir
        assert infos[3] == c.stat(paths[3])
        assert c.status()["handles"] == 0  # every create was closed by its related close


def test_read_many_returns_every_range(daemon: Daemon) -> None:
    data = os.urandom(1 << 20)
    (daemon.share_dir / "r.bin").write_bytes(data)
    rnd = random.Random(7)
    # more ranges than one compound carries, some past the end of the file
    ranges = [(rnd.randrange(0, (1 << 20) + 8192), rnd.randrange(0, 9000)) for _ in range(2500)]
    with daemon.client() as c:
        h = c.create(daemon.share + r"\r.bin")
        got = c.read_many(h.fobx, ranges)
        c.close_handle(h.fobx)
    assert got == [data[off : off + n] for off, n in ranges]


def test_a_related_chain_creates_writes_reads_and_closes_in_one_compound(daemon: Daemon) -> None:
    path = daemon.share + r"\chain.txt"
    with daemon.client() as c:
        outcomes = c.compound(
            [
                rq.create(
                    path,
                    T,
                    access=Access.GENERIC_READ | Access.GENERIC_WRITE,
                    disposition=CreateDisposition.FILE_CREATE,
                ),
                rq.related(rq.write(0, 0, b"hello compound", T)),
                rq.related(rq.read(0, 6, 100, T)),
                rq.related(rq.query_info(0, T)),
                rq.related(rq.close(0, T)),
            ]
        )
        assert [o.status for o in outcomes] == [S.STATUS_SUCCESS] * 5
        assert outcomes[1].value == 14
        assert outcomes[2].value == b"compound"
        assert outcomes[3].value.size == 14
        assert c.status()["handles"] == 0
    assert (daemon.share_dir / "chain.txt").read_bytes() == b"hello compound"


def test_one_failing_item_fails_only_itself_and_its_related_items(daemon: Daemon) -> None:
    (daemon.share_dir / "ok.txt").write_bytes(b"fine")
    with daemon.client() as c:
        h = c.create(daemon.share + r"\ok.txt")
        outcomes = c.compound(
            [
                rq.related(rq.read(0, 0, 10, T)),  # no create before it
                rq.read(987654, 0, 10, T),  # a handle that does not exist
                rq.create(daemon.share + r"\nope.txt", T),
                rq.related(rq.read(0, 0, 10, T)),
                rq.related(rq.close(0, T)),
                rq.read(h.fobx, 0, 10, T),
                rq.create(daemon.share + r"\..\..\etc\passwd", T),  # refused by the core
            ]
        )
        c.close_handle(h.fobx)
        statuses = [o.status for o in outcomes]
        assert statuses[0] == S.STATUS_INVALID_HANDLE
        assert statuses[1] == S.STATUS_INVALID_HANDLE
        assert statuses[2] == statuses[3] == statuses[4] == S.STATUS_OBJECT_NAME_NOT_FOUND
        assert statuses[5] == S.STATUS_SUCCESS and outcomes[5].value == b"fine"
        assert statuses[6] != S.STATUS_SUCCESS
        with pytest.raises(FileNotFoundError):
            outcomes[2].unwrap()
        assert c.status()["handles"] == 0


def test_a_compound_spans_minirdrs_and_waits_for_new_connections(daemon: Daemon) -> None:
    (daemon.share_dir / "l.txt").write_bytes(b"local server")
    paths = [
        r"\\other\data\o.txt",  # first use of \\other\data and \\flaky\data: set up on the way
        r"\\flaky\data\f.txt",
        daemon.share + r"\l.txt",
        r"\\flaky\data\x.secret",  # the faulty mini-redirector refuses this one
        r"\\nosuchserver\data\a.txt",
    ]
    with daemon.client() as c:
        items: list[rq.Request[object]] = []
        for path in paths:
            items += [
                rq.create(path, T),
                rq.related(rq.read(0, 0, 100, T)),
                rq.related(rq.close(0, T)),
            ]
        outcomes = c.compound(items)
        data = [outcomes[3 * k + 1] for k in range(len(paths))]
        assert [d.value for d in data[:3]] == [b"other server", b"flaky server", b"local server"]
        assert outcomes[9].status == data[3].status == S.STATUS_ACCESS_DENIED
        assert outcomes[12].status == S.STATUS_BAD_NETWORK_PATH
        assert data[4].status == S.STATUS_BAD_NETWORK_PATH
        assert c.status()["handles"] == 0


def test_compound_limits_answer_clear_statuses(daemon: Daemon) -> None:
    (daemon.share_dir / "lim.txt").write_bytes(b"fine")
    with daemon.client() as c:
        h = c.create(daemon.share + r"\lim.txt")
        # reads asking for more than one answer may carry go out as separate compounds
        big = [rq.read(h.fobx, 0, 40 << 20, T), rq.read(h.fobx, 0, 40 << 20, T)]
        assert len(list(rq.split_compound(big))) == 2
        assert [o.value for o in c.compound(big)] == [b"fine", b"fine"]
        c.close_handle(h.fobx)
    # a raw compound over the item limit: the codec refuses it, the answer says why
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{daemon.runtime_dir / 'rdbss.sock'}")
    try:
        items = [{"id": i, "mj": IrpMj.READ, "fx": 1} for i in range(1025)]
        sock.send(msgpack.packb({"k": "cx", "v": 1, "id": 99, "it": items}))
        assert sock.poll(5000)
        done = Codec().decode(sock.recv_multipart()[0])
        assert isinstance(done, RxCompletion) and done.request_id == 99
        assert done.status == S.STATUS_INVALID_PARAMETER and "1025 items" in done.message
        big = Compound(
            100,
            [
                RxContext(i, IrpMj.READ, fobx=1, lowio=LowIoParameters(length=40 << 20))
                for i in range(2)
            ],
        )
        sock.send_multipart(pack_frames(Codec(), big))
        assert sock.poll(5000)
        answer = Codec().decode(sock.recv_multipart()[0])
        assert answer.request_id == 100 and answer.status == S.STATUS_INVALID_PARAMETER
    finally:
        sock.close(0)
        ctx.term()
    with daemon.client() as c:
        assert c.ping()


def test_the_asyncio_client_sends_compounds_too(daemon: Daemon) -> None:
    data = os.urandom(64 << 10)
    (daemon.share_dir / "a.bin").write_bytes(data)

    async def main() -> None:
        async with AsyncClient(daemon.runtime_dir, timeout=10) as c:
            infos = await c.stat_many([daemon.share + r"\a.bin", daemon.share + r"\gone"])
            assert isinstance(infos[0], rq.FileInfo) and infos[0].size == len(data)
            assert isinstance(infos[1], FileNotFoundError)
            h = await c.create(daemon.share + r"\a.bin")
            ranges = [(i * 1000, 1000) for i in range(70)]
            got = await c.read_many(h.fobx, ranges)
            await c.close_handle(h.fobx)
            assert b"".join(got) == data[:70_000] and all(len(g) == 1000 for g in got[:65])

    asyncio.run(main())


majors = st.sampled_from(
    [
        IrpMj.CREATE,
        IrpMj.READ,
        IrpMj.WRITE,
        IrpMj.CLOSE,
        IrpMj.QUERY_INFORMATION,
        IrpMj.SET_INFORMATION,
        IrpMj.DIRECTORY_CONTROL,
        IrpMj.FLUSH_BUFFERS,
        IrpMj.LOCK_CONTROL,
        IrpMj.FILE_SYSTEM_CONTROL,
        0x7F,
    ]
)
items = st.lists(
    st.tuples(
        majors,
        st.integers(0, 3),  # minor
        st.sampled_from([0, RxFlags.RELATED]),
        st.sampled_from([None, 0, 1, 2, 10**12]),  # fobx
        st.sampled_from([r"\ok.txt", r"\missing", r"\dir", "", r"\..\x", r"\\other\data\o.txt"]),
        st.integers(-1, 1 << 20),  # offset / length (below -1 the codec refuses the message)
        st.integers(0, 0x1FFFFF),  # access
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(items)
def test_random_compounds_get_one_answer_per_item_and_leave_nothing_open(
    daemon: Daemon, items: list[tuple[int, int, int, int | None, str, int, int]]
) -> None:
    (daemon.share_dir / "ok.txt").write_bytes(b"fine")
    (daemon.share_dir / "dir").mkdir(exist_ok=True)
    requests = []
    for major, minor, flags, fobx, path, number, access in items:
        ctx = RxContext(0, major, minor=minor, flags=flags, fobx=fobx, timeout_ms=T)
        if major == IrpMj.CREATE:
            ctx.path = path if path.startswith("\\\\") else daemon.share + path
            ctx.create = CreateParameters(desired_access=access, disposition=number % 6)
        else:
            ctx.lowio = LowIoParameters(offset=number, length=abs(number) % 9000)
        payload = b"w" * (abs(number) % 100) if major == IrpMj.WRITE else None
        requests.append(rq.Request(ctx, lambda done, data: done.result, payload))
    with daemon.client() as c:
        before = c.status()["handles"]
        outcomes = c.compound(requests)
        assert len(outcomes) == len(requests)  # every item answered, none lost or doubled
        for request, outcome in zip(requests, outcomes, strict=True):
            if request.ctx.major == 0x7F:  # no such major function: refused, never served
                assert not outcome.ok
            if request.ctx.major == IrpMj.CREATE and outcome.ok:
                with contextlib.suppress(NtStatusError):  # a related close may have closed it
                    c.close_handle(outcome.value["fobx"])
        assert c.status()["handles"] == before
        assert c.status()["pending"] == 0


def test_a_compound_with_an_item_out_of_range_is_refused_whole_at_once(daemon: Daemon) -> None:
    """A number outside its field's range is a malformed message: the compound is answered at
    once with its own id and the item's field named, and none of its items runs."""
    ok = rq.create(daemon.share + r"\never-made.txt", T, disposition=CreateDisposition.FILE_CREATE)
    bad = rq.read(1, 0, 10, T)
    assert bad.ctx.lowio is not None
    bad.ctx.lowio.offset = -5  # past the client's own check, as a hostile client would
    with daemon.client() as c:
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.compound([ok, bad])
        assert time.monotonic() - started < 1.0
        assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
        assert "it[1].lo.of (offset): out of range" in (info.value.strerror or "")
    assert not (daemon.share_dir / "never-made.txt").exists()


def test_a_stat_of_a_file_open_elsewhere_collapses_and_closes_only_its_own_handle() -> None:
    """A stat is one compound (create + related close). When the create collapses onto a
    SrvOpen another handle holds (open collapsing: same access, sharing and options), the close
    must not ride along as an MRxCloseSrvOpen of that shared open: the other handle keeps
    working and the server open stays until it closes."""
    with running_daemon() as d:
        (d.share_dir / "shared.txt").write_bytes(b"0123456789")
        with d.client() as c:
            h = c.create(d.share + r"\shared.txt", access=Access.FILE_READ_ATTRIBUTES)
            for _ in range(3):
                assert c.stat(d.share + r"\shared.txt").size == 10
            assert c.status()["buffering"]["collapsed_opens"] == 3
            assert c.query_info(h.fobx).size == 10  # the shared SrvOpen is still open
            assert c.status()["handles"] == 1
            c.close_handle(h.fobx)
            assert c.status()["handles"] == 0


def test_a_compound_whose_answer_exceeds_the_header_limit_is_answered_at_once(
    daemon: Daemon,
) -> None:
    """Two queries of a big folder answer more than one message header holds (1 MiB): the
    mini-redirector sends the items apart, and what still does not fit comes back as
    STATUS_BUFFER_OVERFLOW, never as silence until the deadline, however often it happens."""
    folder = daemon.share_dir / "huge"
    folder.mkdir()
    for i in range(9000):
        (folder / f"{i:05d}-{'n' * 180}").touch()
    unc = daemon.share + r"\huge"
    with daemon.client(timeout=60.0) as c:
        for _ in range(3):  # each time again: nothing is left stuck by the one before
            outcomes = c.compound(
                [
                    rq.create(unc, T, access=Access.FILE_LIST_DIRECTORY),
                    rq.related(rq.query_directory(0, T, max_entries=4096)),
                    rq.related(rq.query_directory(0, T, max_entries=4096)),
                    rq.related(rq.close(0, T)),
                ]
            )
            statuses = {o.status for o in outcomes}
            assert S.STATUS_IO_TIMEOUT not in statuses, outcomes
            assert statuses <= {S.STATUS_SUCCESS, S.STATUS_BUFFER_OVERFLOW}, outcomes
            assert S.STATUS_BUFFER_OVERFLOW in statuses, outcomes
            assert c.status()["handles"] == 0  # the close ran
        # the same queries apart fit, and list every name
        names = {e.name for e in c.scandir(unc)}
    assert len(names) == 9000
