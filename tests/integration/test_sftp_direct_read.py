"""The SFTP mini-redirector's direct path for whole compounds, against a private OpenSSH sshd
(rdbss/minirdrs/sftp/prefetch.py): a small file read whole (a create for reading, a READ, the
close) and a folder's listing (its create, one or two queries, maybe the close). Every answer
is the worker's for the same compound; a small read takes three round trips and one request
fewer; anything the path does not serve goes to the worker."""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Any

import pytest
from asyncssh.sftp import FXP_CLOSE, FXP_LSTAT, FXP_OPEN, FXP_READ, FXP_REALPATH

from rdbss.actors.minirdr_host import MiniRdrHost, execute_compound
from rdbss.minirdrs.sftp.minirdr import SftpMiniRdr
from rdbss.testing.bridge import RecordingBridge
from rdbss.wire import (
    Access,
    Compound,
    CompoundCompletion,
    CreateDisposition,
    CreateOptions,
    CreateParameters,
    IrpMn,
    NtStatus,
    QueryDirectoryParameters,
    Routine,
    RxCompletion,
)
from rdbss.wire.constants import RxFlags
from tests.chains import Answer, run_compound
from tests.integration import test_sftp_direct
from tests.integration.test_sftp_direct import (
    SHARE,
    _chain_close,
    _item,
    _query,
    _read,
    _Requests,
    _share_folder,
)

sftp = test_sftp_direct.sftp  # the module's mini-redirector on its private sshd

S = NtStatus


def _small_read(
    path: str,
    *,
    length: int = 64 << 10,
    offset: int = 0,
    access: int = Access.GENERIC_READ,
    disposition: int = CreateDisposition.FILE_OPEN,
    options: int = CreateOptions.FILE_NON_DIRECTORY_FILE,
) -> Compound:
    """What ``Client.read_bytes`` and the mount send for a small file (rq.read_file_items)."""
    params = CreateParameters(
        desired_access=access, disposition=disposition, create_options=options
    )
    items = [_item(Routine.MRxCreate, path=path, create=params), _read(length, offset)]
    items.append(_chain_close())
    for number, ctx in enumerate(items, 1):
        ctx.request_id, ctx.timeout_ms = number, 10_000
    return Compound(9, items, timeout_ms=10_000)


def _direct(sftp: SftpMiniRdr, cx: Compound, opens: int = 0) -> list[Answer] | str:
    """The direct path's answers for ``cx`` (as ``run_compound`` gives them), or "not taken"
    / "worker" when it does not serve it; ``opens`` SrvOpens are left in the OpenTable."""
    answers: list[tuple[RxCompletion, Any]] = []
    outcome: queue.Queue[str] = queue.Queue()

    def here() -> None:
        execute_compound(sftp, cx, lambda done, payload: answers.append((done, payload)))
        outcome.put("here")

    if not sftp.start_direct_compound(cx, here, lambda: outcome.put("worker")):
        return "not taken"
    if outcome.get(timeout=10) == "worker":
        return "worker"
    assert len(sftp._opens) == opens, "a SrvOpen was left in the OpenTable"
    out: list[Answer] = []
    for done, payload in answers:
        result = done.result
        if isinstance(result, dict):
            result = {k: v for k, v in result.items() if k != "srv_open"}
        out.append(
            (done.status, done.information, result, None if payload is None else bytes(payload))
        )
    return out


@pytest.mark.parametrize(
    ("path", "offset", "length"),
    [
        ("f.txt", 0, 64 << 10),
        ("f.txt", 3, 4),
        ("f.txt", 10, 5),  # at the end: END_OF_FILE
        (r"d\g.txt", 0, 100),
        ("missing", 0, 10),
        (r"d\missing.txt", 0, 10),
        (r"missing\f.txt", 0, 10),
        (r"f.txt\g.txt", 0, 10),  # the "parent" is a file
        (rf"out\{SHARE}\f.txt", 0, 10),  # through a link leading out of the share
    ],
)
def test_a_small_read_on_the_direct_path_answers_as_the_chain_on_the_worker(
    sftp: SftpMiniRdr, path: str, offset: int, length: int
) -> None:
    cx = _small_read(path, offset=offset, length=length)
    on_worker = run_compound(sftp, cx, chained=True)
    direct = _direct(sftp, _small_read(path, offset=offset, length=length))
    assert direct == on_worker


@pytest.mark.parametrize("path", ["d", "", "link", "dangling", "fifo", "sock"])
def test_a_name_that_is_no_regular_file_goes_to_the_worker(sftp: SftpMiniRdr, path: str) -> None:
    """Nothing but a regular file is opened ahead of the create's rules (a FIFO would block
    the server's session): a folder, a link, a FIFO or a socket go to the worker."""
    assert _direct(sftp, _small_read(path)) == "worker"


def _elsewhere(cx: Compound) -> Compound:
    for ctx in cx.items:
        ctx.srv_call = "elsewhere"
    return cx


@pytest.mark.parametrize(
    "cx",
    [
        _small_read("f.txt", access=Access.GENERIC_READ | Access.GENERIC_WRITE),
        _small_read("f.txt", access=Access.FILE_READ_ATTRIBUTES),
        _small_read("f.txt", disposition=CreateDisposition.FILE_OPEN_IF),
        _small_read("f.txt", options=CreateOptions.FILE_DELETE_ON_CLOSE),
        _small_read("f.txt", options=CreateOptions.FILE_DIRECTORY_FILE),
        _small_read("f.txt", length=8 << 20),  # more than one request of the server's limit
        Compound(9, [_small_read("f.txt").items[0], _read(), _query(), _chain_close()]),
        Compound(9, [_small_read("f.txt").items[0], _read()]),  # no close
        _elsewhere(_small_read("f.txt")),  # no such connection
        _small_read(r"..\x"),  # a name the create refuses
    ],
)
def test_the_direct_path_takes_only_a_small_read_whole(sftp: SftpMiniRdr, cx: Compound) -> None:
    assert _direct(sftp, cx) == "not taken"


def test_a_direct_small_read_is_three_round_trips_and_no_stat_beside_the_open(
    sftp: SftpMiniRdr,
) -> None:
    with _Requests(sftp) as requests:
        answers = _direct(sftp, _small_read(r"d\g.txt"))
    assert isinstance(answers, list) and answers[1][3] == b"abc"
    assert requests.round_trips == 3, requests.sent
    assert sorted(requests.kinds[:2]) == sorted([FXP_REALPATH, FXP_LSTAT])
    assert requests.kinds[2:] == [FXP_OPEN, FXP_READ, FXP_CLOSE]


def test_a_file_being_deleted_is_delete_pending_on_the_direct_path_too(
    sftp: SftpMiniRdr,
) -> None:
    folder = _share_folder(sftp)
    (folder / "pending.txt").write_bytes(b"p")
    params = CreateParameters(
        desired_access=Access.DELETE, create_options=CreateOptions.FILE_DELETE_ON_CLOSE
    )
    deleting = sftp.create(_item(Routine.MRxCreate, path="pending.txt", create=params))
    try:
        answers = _direct(sftp, _small_read("pending.txt"), opens=1)
        assert isinstance(answers, list)
        assert [answer[0] for answer in answers] == [S.STATUS_DELETE_PENDING] * 3
    finally:
        sftp.close_srv_open(_item(Routine.MRxCloseSrvOpen, srv_open=deleting.result["srv_open"]))
    assert not (folder / "pending.txt").exists()


def test_the_host_answers_a_small_read_from_the_direct_path_in_one_message(
    sftp: SftpMiniRdr,
) -> None:
    """Through the host: the three answers leave as one CompoundCompletion, no worker is
    started, and a file changed on the server is read as it is now."""
    bridge = RecordingBridge()
    sink = sftp._completion_sink
    host = MiniRdrHost(bridge, sftp)  # type: ignore[arg-type]
    folder = _share_folder(sftp)
    try:
        for round_, data in enumerate([os.urandom(700), os.urandom(300)]):
            (folder / "host.bin").write_bytes(data)
            host.on_message(_small_read("host.bin"), None)
            sent = bridge.answers(round_ + 1)[round_]
            assert isinstance(sent, CompoundCompletion)
            assert [done.status for done in sent.items] == [S.STATUS_SUCCESS] * 3
            assert bytes(sent.payloads[0]) == data
            assert sent.items[0].result["size"] == len(data)
        assert host.workers == {}
        assert host.pending_count() == 0
    finally:
        for ref in host.workers.values():
            ref.stop(block=True, timeout=5.0)
        sftp.attach_completion(sink)  # type: ignore[arg-type]
        Path(folder / "host.bin").unlink()


# --- a folder's listing ---------------------------------------------------------------------
def _listing(path: str, *, queries: int = 2, close: bool = True, batch: int = 512) -> Compound:
    """What ``Client.listdir``, fsspec ``ls`` and the mount send (rq.list_items), the close
    when ``close``; each query's handle is the one the core gives (FOBX 7)."""
    params = CreateParameters(
        desired_access=Access.FILE_LIST_DIRECTORY,
        create_options=CreateOptions.FILE_DIRECTORY_FILE,
    )
    items = [_item(Routine.MRxCreate, path=path, create=params)]
    items += [_query_directory(batch, related=True) for _ in range(queries)]
    if close:
        items.append(_chain_close())
    for number, ctx in enumerate(items, 1):
        ctx.request_id, ctx.timeout_ms = number, 10_000
    return Compound(9, items, timeout_ms=10_000)


def _query_directory(batch: int, *, related: bool) -> Any:
    query = QueryDirectoryParameters(pattern="*", max_entries=batch)
    ctx = _item(Routine.MRxQueryDirectory, minor=IrpMn.QUERY_DIRECTORY, query_directory=query,
                fobx=7, flags=RxFlags.RELATED if related else 0)  # fmt: skip
    ctx.timeout_ms = 10_000
    return ctx


@pytest.mark.parametrize("path", ["d", "", "missing", r"missing\x", r"f.txt\x", rf"out\{SHARE}\d"])
@pytest.mark.parametrize("queries", [1, 2])
def test_a_listing_on_the_direct_path_answers_as_on_the_worker(
    sftp: SftpMiniRdr, path: str, queries: int
) -> None:
    on_worker = run_compound(sftp, _listing(path, queries=queries), chained=False)
    assert _direct(sftp, _listing(path, queries=queries)) == on_worker


@pytest.mark.parametrize("path", ["f.txt", "link", "out", "dangling", "fifo"])
def test_a_listing_of_what_is_no_folder_goes_to_the_worker(sftp: SftpMiniRdr, path: str) -> None:
    assert _direct(sftp, _listing(path)) == "worker"


def test_a_long_listing_goes_on_from_the_direct_path_on_the_worker(sftp: SftpMiniRdr) -> None:
    """Two batches on the direct path leave the handle open with its enumeration where the
    second stopped: the next query, on the worker, goes on from there."""
    folder = _share_folder(sftp) / "many"
    folder.mkdir()
    names = {f"n{i:02}" for i in range(40)}
    for name in names:
        (folder / name).write_bytes(b"")
    try:
        answers = _direct(sftp, _listing("many", close=False, batch=16), opens=1)
        assert isinstance(answers, list)
        assert [answer[0] for answer in answers] == [S.STATUS_SUCCESS] * 3
        seen = [e["name"] for answer in answers[1:] for e in answer[2]["entries"]]
        (srv_open,) = list(sftp._opens._opens)
        rest = _query_directory(16, related=False)
        rest.srv_open = srv_open
        third = sftp.query_directory(rest)
        seen += [e["name"] for e in third.result["entries"]]
        assert sorted(seen) == sorted(names)
        sftp.close_srv_open(_item(Routine.MRxCloseSrvOpen, srv_open=srv_open))
    finally:
        for name in names:
            (folder / name).unlink()
        folder.rmdir()


def test_a_listing_on_the_direct_path_is_two_round_trips(sftp: SftpMiniRdr) -> None:
    with _Requests(sftp) as requests:
        answers = _direct(sftp, _listing("d"))
    assert isinstance(answers, list)
    assert [e["name"] for e in answers[1][2]["entries"]] == ["g.txt"]
    # the lookup; then the folder's open, its entries and its close (asyncssh's readdir)
    assert requests.round_trips <= 5, requests.sent
    assert sorted(requests.kinds[:1]) == [FXP_LSTAT]
