"""The SFTP mini-redirector's direct path for a small file read whole (a create for reading, a
READ, the close: one compound, maybe after the closes of other handles), against a private
OpenSSH sshd (rdbss/minirdrs/sftp/prefetch.py): every answer is the worker's for the same
compound, in three round trips and one request fewer; anything the path does not serve goes to
the worker. And a listing's round trips (rdbss/minirdrs/sftp/folders.py)."""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Any

import pytest
from asyncssh.sftp import (
    FXP_CLOSE,
    FXP_LSTAT,
    FXP_OPEN,
    FXP_OPENDIR,
    FXP_READ,
    FXP_READDIR,
    FXP_REALPATH,
)

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
    RxContext,
)
from rdbss.wire.constants import RxFlags
from tests.chains import Answer, answers_of, run_compound
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
    return _numbered(items)


def _numbered(items: list[RxContext]) -> Compound:
    """``items`` as the core sends them: numbered 1, 2..., each with a deadline."""
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
    return answers_of(answers)


def _unread(answers: list[Answer] | str) -> list[Answer] | str:
    """``answers`` without the access times, which the first of two runs that read or list
    the same names moves."""
    if isinstance(answers, str):
        return answers

    def plain(result: Any) -> Any:
        if not isinstance(result, dict):
            return result
        out = {k: v for k, v in result.items() if k != "last_access_time"}
        if "entries" in out:
            out["entries"] = [plain(entry) for entry in out["entries"]]
        return out

    return [(status, info, plain(result), data) for status, info, result, data in answers]


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
    assert _unread(direct) == _unread(on_worker)


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
    items += [_query_directory(batch) for _ in range(queries)]
    if close:
        items.append(_chain_close())
    return _numbered(items)


def _query_directory(batch: int) -> RxContext:
    query = QueryDirectoryParameters(pattern="*", max_entries=batch)
    return _item(Routine.MRxQueryDirectory, minor=IrpMn.QUERY_DIRECTORY, query_directory=query,
                 fobx=7, flags=RxFlags.RELATED)  # fmt: skip


@pytest.mark.parametrize("queries", [1, 2])
@pytest.mark.parametrize("close", [True, False])
def test_a_listing_stays_on_the_worker(sftp: SftpMiniRdr, queries: int, close: bool) -> None:
    """A listing keeps its place in the worker's order (rdbss/minirdrs/sftp/prefetch.py)."""
    assert _direct(sftp, _listing("d", queries=queries, close=close)) == "not taken"


def test_a_listing_is_three_round_trips(sftp: SftpMiniRdr) -> None:
    """The lookup, the folder's OPENDIR, then two READDIRs at once (the second answers the
    end); the CLOSE is not waited for (rdbss/minirdrs/sftp/folders.py)."""
    with _Requests(sftp) as requests:
        answers = run_compound(sftp, _listing("d"), chained=False)
    assert [e["name"] for e in answers[1][2]["entries"]] == ["g.txt"]
    assert requests.kinds[:4] == [FXP_LSTAT, FXP_OPENDIR, FXP_READDIR, FXP_READDIR]
    assert [answered for _, answered in requests.sent[:4]] == [0, 1, 2, 2]


@pytest.mark.parametrize("count", [0, 99, 100, 101, 450])
def test_a_folder_of_many_batches_is_listed_whole(sftp: SftpMiniRdr, count: int) -> None:
    """Around the server's batch of READDIR (OpenSSH: 100 entries), two at a time."""
    folder = _share_folder(sftp) / f"batches{count}"
    folder.mkdir()
    names = {f"e{i:03}" for i in range(count)}
    for name in names:
        (folder / name).write_bytes(b"")
    try:
        answers = run_compound(sftp, _listing(folder.name, batch=1000), chained=False)
        listed = {e["name"] for answer in answers[1:3] if answer[2] for e in answer[2]["entries"]}
        assert listed == names
        assert answers[1][0] == (S.STATUS_SUCCESS if count else S.STATUS_NO_SUCH_FILE)
    finally:
        for name in names:
            (folder / name).unlink()
        folder.rmdir()


# --- the core's delayed closes, sent before the create ----------------------------------------
def _open(sftp: SftpMiniRdr, path: str, access: int = Access.GENERIC_READ, **more: Any) -> int:
    params = CreateParameters(desired_access=access, **more)
    opened = sftp.create(_item(Routine.MRxCreate, path=path, create=params))
    return int(opened.result["srv_open"])


def _after_closes(cx: Compound, *srv_opens: int) -> Compound:
    """``cx`` with the cleanup and close of each of ``srv_opens`` in front of it."""
    closes = []
    for srv_open in srv_opens:
        closes.append(_item(Routine.MRxCleanupFobx, fobx=srv_open + 100, srv_open=srv_open))
        closes.append(_item(Routine.MRxCloseSrvOpen, srv_open=srv_open))
    return _numbered(closes + cx.items)


def test_the_closes_before_a_compound_are_answered_on_the_direct_path(
    sftp: SftpMiniRdr,
) -> None:
    """The core sends its delayed closes of other handles in front of the next compound: the
    handles (a file's, a folder's) are closed first, pipelined with the lookup."""
    reading = _open(sftp, "f.txt")
    listing = _open(sftp, "d", Access.FILE_LIST_DIRECTORY)
    handle = sftp._opens.get(reading).file
    answers = _direct(sftp, _after_closes(_small_read("f.txt"), reading, listing))
    assert isinstance(answers, list)
    assert [answer[0] for answer in answers[:4]] == [S.STATUS_SUCCESS] * 4
    assert answers[4][0] == S.STATUS_SUCCESS
    assert sftp._opens.find(reading) is None and sftp._opens.find(listing) is None
    assert handle is not None and handle._handle is None  # closed on the server


def test_a_close_before_a_compound_reports_an_earlier_write_failure(sftp: SftpMiniRdr) -> None:
    folder = _share_folder(sftp)
    (folder / "werr.txt").write_bytes(b"w")
    writing = _open(sftp, "werr.txt", Access.GENERIC_READ | Access.GENERIC_WRITE)
    sftp._opens.get(writing).write_error = (int(S.STATUS_DISK_FULL), "no space")
    try:
        answers = _direct(sftp, _after_closes(_small_read("f.txt"), writing))
        assert isinstance(answers, list)
        assert answers[1][0] == S.STATUS_DISK_FULL  # the close
        assert [answer[0] for answer in answers[2:]] == [S.STATUS_SUCCESS] * 3
    finally:
        (folder / "werr.txt").unlink()


def test_a_close_that_deletes_keeps_the_compound_on_the_worker(sftp: SftpMiniRdr) -> None:
    folder = _share_folder(sftp)
    (folder / "del.txt").write_bytes(b"d")
    deleting = _open(sftp, "del.txt", Access.DELETE,
                     create_options=CreateOptions.FILE_DELETE_ON_CLOSE)  # fmt: skip
    try:
        assert _direct(sftp, _after_closes(_small_read("f.txt"), deleting), opens=1) == (
            "not taken"
        )
    finally:
        sftp.close_srv_open(_item(Routine.MRxCloseSrvOpen, srv_open=deleting))
    assert not (folder / "del.txt").exists()


def test_a_compound_that_goes_to_the_worker_after_its_closes_still_answers_them(
    sftp: SftpMiniRdr,
) -> None:
    """A read of what turns out to be a folder goes to the worker once the closes before it
    were sent: the worker's close answers what the early close met."""
    reading = _open(sftp, "f.txt")
    cx = _after_closes(_small_read("d"), reading)
    assert _direct(sftp, cx) == "worker"
    answers = run_compound(sftp, cx, chained=True)
    assert [answer[0] for answer in answers[:2]] == [S.STATUS_SUCCESS] * 2
    assert answers[2][0] == S.STATUS_FILE_IS_A_DIRECTORY


def test_the_direct_path_takes_its_share_from_the_create_not_the_closes(
    sftp: SftpMiniRdr,
) -> None:
    """The closes in front may be of another share's handles (here one the mini-redirector
    never heard of): the create names the share the compound reads."""
    cx = _after_closes(_small_read("f.txt"), 999_999)
    for ctx in cx.items[:2]:
        ctx.net_root = "elsewhere"
    answers = _direct(sftp, cx)
    assert isinstance(answers, list)
    assert answers[1][0] == S.STATUS_INVALID_HANDLE  # the close of a handle nobody holds
    assert answers[3][3] == b"0123456789"
