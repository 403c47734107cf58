"""The conformance suite's harness: a :class:`ConformanceBackend` (one daemon, one client and
what the mini-redirector under test registered with the core), a fresh :class:`Scratch` folder
per test, and the helpers the contract tests check statuses with.

Tests drive the contract through the public client API (or raw RX_CONTEXTs where the client has
no call yet) and check bytes with the backend's independent client (``BackendSetup.read_back``).
A test that needs a routine (or low I/O operation) calls ``backend.requires(...)`` first: it skips
when, and only when, the mini-redirector did not register it. A mini-redirector that registers a
routine and then fails its contract fails the suite.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rdbss.client import Client, FileInfo, Handle
from rdbss.testing.backend import BackendSetup
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    IrpMj,
    IrpMn,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    QueryDirectoryParameters,
    Routine,
    RxCompletion,
    RxContext,
    ShareAccess,
)
from rdbss.wire.status import status_name

S = NtStatus
#: Deadline of one raw request (milliseconds): every wait in the suite is bounded.
REQUEST_TIMEOUT_MS = 10_000
#: Default deadline of a client's calls (seconds).
CLIENT_TIMEOUT_S = 10.0
#: SL_FAIL_IMMEDIATELY and SL_EXCLUSIVE_LOCK, the byte-range lock flags of IRP_MJ_LOCK_CONTROL
#: (see docs/routines.md, Low I/O).
FAIL_IMMEDIATELY = 0x1
EXCLUSIVE_LOCK = 0x2


# ------------------------------------------------------------------------------ status checks
def status_text(status: int) -> str:
    return f"{status_name(status)} (0x{status & 0xFFFFFFFF:08X})"


@contextlib.contextmanager
def raises_status(expected: int) -> Iterator[None]:
    """Assert that the block raises an NtStatusError carrying exactly ``expected``."""
    try:
        yield
    except NtStatusError as exc:
        assert exc.status == expected, (
            f"expected {status_text(expected)}, got {status_text(exc.status)}: {exc.strerror}"
        )
    else:
        pytest.fail(f"expected {status_text(expected)}, but the operation succeeded")


def call_status(
    client: Client, ctx: RxContext, payload: bytes | None = None
) -> tuple[RxCompletion, memoryview | None]:
    """Send a raw request and return its completion whatever the status (never raises for one)."""
    every = tuple(int(s) for s in NtStatus)
    try:
        return client.call(ctx, payload, ok=every)
    except NtStatusError as exc:  # a status outside NtStatus: still an answer
        return RxCompletion(ctx.request_id, exc.status, message=exc.strerror or ""), None


def raw(major: int, fobx: int, *, minor: int = 0, **fields: Any) -> RxContext:
    """A raw RX_CONTEXT on an open handle, with the suite's deadline."""
    return RxContext(
        request_id=0,
        major=major,
        minor=minor,
        fobx=fobx,
        timeout_ms=REQUEST_TIMEOUT_MS,
        **fields,
    )


def read_status(client: Client, fobx: int, offset: int, length: int) -> tuple[int, bytes]:
    """IRP_MJ_READ at the handle level: (status, data), END_OF_FILE kept as a status."""
    done, data = call_status(
        client, raw(IrpMj.READ, fobx, lowio=LowIoParameters(offset=offset, length=length))
    )
    return done.status, bytes(data) if data is not None else b""


def query_directory_status(
    client: Client,
    fobx: int,
    pattern: str = "*",
    *,
    max_entries: int = 512,
    restart: bool = False,
) -> tuple[int, list[FileInfo]]:
    """One MRxQueryDirectory batch: (status, entries), NO_MORE_FILES / NO_SUCH_FILE kept."""
    qd = QueryDirectoryParameters(pattern=pattern, restart_scan=restart, max_entries=max_entries)
    done, _ = call_status(
        client,
        raw(IrpMj.DIRECTORY_CONTROL, fobx, minor=IrpMn.QUERY_DIRECTORY, query_directory=qd),
    )
    result = done.result if isinstance(done.result, dict) else {}
    entries = result.get("entries", []) if done.status == S.STATUS_SUCCESS else []
    return done.status, [FileInfo.from_result(e) for e in entries]


#: The most batches a listing may take before the suite calls the enumeration endless.
MAX_BATCHES = 1000


def scan(client: Client, unc: str, pattern: str = "*") -> list[FileInfo]:
    """Every entry of a folder (Client.scandir with a bound): fails, rather than looping, when
    the enumeration does not end with NO_MORE_FILES / NO_SUCH_FILE."""
    with opened(
        client, unc, access=Access.FILE_LIST_DIRECTORY, options=CreateOptions.FILE_DIRECTORY_FILE
    ) as h:
        entries: list[FileInfo] = []
        for _ in range(MAX_BATCHES):
            status, batch = query_directory_status(client, h.fobx, pattern)
            if status in (S.STATUS_NO_MORE_FILES, S.STATUS_NO_SUCH_FILE):
                return entries
            assert_status(status, S.STATUS_SUCCESS, f"listing {unc} with {pattern!r}")
            assert batch, "a successful directory query returned no entries"
            entries += batch
        pytest.fail(f"listing {unc} did not end after {MAX_BATCHES} batches")


def listdir(client: Client, unc: str, pattern: str = "*") -> list[str]:
    """Sorted names of a folder's entries (bounded, see ``scan``)."""
    return sorted(e.name for e in scan(client, unc, pattern))


def lock_status(client: Client, fobx: int, offset: int, length: int, *, exclusive: bool) -> int:
    """IRP_MJ_LOCK_CONTROL / IRP_MN_LOCK with SL_FAIL_IMMEDIATELY: the status."""
    flags = FAIL_IMMEDIATELY | (EXCLUSIVE_LOCK if exclusive else 0)
    lowio = LowIoParameters(offset=offset, length=length, flags=flags)
    done, _ = call_status(client, raw(IrpMj.LOCK_CONTROL, fobx, minor=IrpMn.LOCK, lowio=lowio))
    return done.status


def unlock_status(client: Client, fobx: int, offset: int, length: int) -> int:
    """IRP_MJ_LOCK_CONTROL / IRP_MN_UNLOCK_SINGLE: the status."""
    lowio = LowIoParameters(offset=offset, length=length)
    done, _ = call_status(
        client, raw(IrpMj.LOCK_CONTROL, fobx, minor=IrpMn.UNLOCK_SINGLE, lowio=lowio)
    )
    return done.status


def assert_status(got: int, expected: int, what: str) -> None:
    assert got == expected, f"{what}: expected {status_text(expected)}, got {status_text(got)}"


@contextlib.contextmanager
def opened(
    client: Client,
    path: str,
    *,
    access: int = Access.GENERIC_READ,
    disposition: int = CreateDisposition.FILE_OPEN,
    options: int = CreateOptions.NONE,
    share: int = ShareAccess.ALL,
) -> Iterator[Handle]:
    """Client.create, closed when the block ends (whatever happens in it)."""
    handle = client.create(
        path, access=access, disposition=disposition, options=options, share=share
    )
    try:
        yield handle
    finally:
        with contextlib.suppress(NtStatusError):
            client.close_handle(handle.fobx)


class Background:
    """Run one blocking call on a thread; ``result(deadline_s)`` joins it with a deadline."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the test thread
            self._error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, deadline_s: float) -> Any:
        self._thread.join(deadline_s)
        if self._thread.is_alive():
            pytest.fail(f"the background call did not finish in {deadline_s:.1f} s")
        if self._error is not None:
            raise self._error
        return self._value


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() >= end:
            pytest.fail(f"timed out after {deadline_s:.1f} s waiting for {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------ scratch folders
_current_test = "test"


def name_scratch_dirs(test_name: str) -> None:
    """Name the scratch folders ``fresh_dir`` makes from now on after ``test_name`` (the
    plugin's autouse fixture calls this for every test)."""
    global _current_test
    _current_test = test_name


def _dir_label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name.removeprefix("test_")).strip("-")[:48] or "t"


@dataclass(frozen=True)
class Scratch:
    """An empty folder of its own for one test: ``path`` gives UNC names in it, ``rel`` names
    relative to the backend root (what ``read_back``/``write_direct`` take)."""

    backend: ConformanceBackend
    rel: str  # relative to the backend root, backslashes

    @property
    def unc(self) -> str:
        return self.backend.path(self.rel)

    def path(self, *parts: str) -> str:
        return self.backend.path(self.rel, *parts)

    def rel_path(self, *parts: str) -> str:
        return "\\".join([self.rel, *parts])

    def put(self, name: str, data: bytes) -> None:
        """Write ``name`` (relative to this folder, backslashes) with the independent client."""
        self.backend.setup.write_direct(self.rel_path(name), data)

    def get(self, name: str) -> bytes:
        """Read ``name`` back with the independent client."""
        return self.backend.setup.read_back(self.rel_path(name))

    def host(self, name: str = "") -> Path:
        """Where ``name`` (relative to this folder) lives on this machine, behind the server."""
        host_path = self.backend.setup.host_path
        if host_path is None:
            pytest.skip(f"backend {self.backend.kind} gives no host folder (--host-dir)")
        return host_path(self.rel_path(name) if name else self.rel)

    def absent_on_server(self, name: str) -> bool:
        """True when the independent client cannot read ``name`` as a file."""
        try:
            self.backend.setup.read_back(self.rel_path(name))
        except Exception:
            return True
        return False


@dataclass
class ConformanceBackend:
    kind: str
    setup: BackendSetup
    runtime_dir: Path
    client: Client
    routines: frozenset[str]
    lowio_ops: frozenset[int]
    peer: dict[str, Any]
    _dirs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def minirdr(self) -> str:
        return self.setup.minirdr

    def path(self, *parts: str) -> str:
        """A UNC name under the backend's scratch root."""
        return "\\".join([self.setup.root.rstrip("\\"), *parts])

    def fresh_dir(self) -> Scratch:
        """A new, empty folder for the running test (created through rdbss)."""
        rel = f"{next(self._dirs):03d}-{_dir_label(_current_test)}"
        self.client.mkdir(self.path(rel))
        return Scratch(self, rel)

    def requires(self, routine: Routine | str, lowio_op: LowIoOp | None = None) -> None:
        """Skip the test unless the mini-redirector registered ``routine`` (and ``lowio_op``)."""
        if lowio_op is not None:
            assert routine == Routine.MRxLowIOSubmit, "a low I/O operation needs MRxLowIOSubmit"
        if str(routine) not in self.routines:
            pytest.skip(f"{self.minirdr} ({self.kind}) does not register {routine}")
        if lowio_op is not None and int(lowio_op) not in self.lowio_ops:
            pytest.skip(
                f"{self.minirdr} ({self.kind}) does not register "
                f"MRxLowIOSubmit[LOWIO_OP_{LowIoOp(lowio_op).name}]"
            )

    def registers(self, routine: Routine | str, lowio_op: LowIoOp | None = None) -> bool:
        if str(routine) not in self.routines:
            return False
        return lowio_op is None or int(lowio_op) in self.lowio_ops

    def connect(self) -> Client:
        """Another client of the same daemon (a second 'process' with its own handles)."""
        return Client(self.runtime_dir, timeout=CLIENT_TIMEOUT_S)

    def requests_sent(self) -> int:
        """How many requests the core has sent to the mini-redirector under test so far."""
        for peer in self.client.status()["peers"]:
            if peer["name"] == self.minirdr:
                return int(peer["requests"])
        pytest.fail(f"{self.minirdr} is no longer registered with the core")

    def pending(self) -> int:
        return int(self.client.status()["pending"])


def _registration(client: Client, minirdr: str) -> dict[str, Any]:
    peers = client.status()["peers"]
    for peer in peers:
        if peer["name"] == minirdr:
            return dict(peer)
    names = sorted(p["name"] for p in peers)
    pytest.fail(f"mini-redirector {minirdr!r} did not register with the core (peers: {names})")


@contextlib.contextmanager
def open_backend(
    kind: str | None, setup: BackendSetup, runtime_dir: Path
) -> Iterator[ConformanceBackend]:
    """Connect to the daemon of ``runtime_dir`` and read what ``setup.minirdr`` registered (fails
    the test's setup when it did not register). ``kind`` is the mini-redirector kind the suite
    expects it to be; None takes the kind it registered as."""
    with Client(runtime_dir, timeout=CLIENT_TIMEOUT_S) as client:
        peer = _registration(client, setup.minirdr)
        yield ConformanceBackend(
            kind=kind if kind is not None else str(peer["kind"]),
            setup=setup,
            runtime_dir=runtime_dir,
            client=client,
            routines=frozenset(str(r) for r in peer["routines"]),
            lowio_ops=frozenset(int(op) for op in peer["lowio_ops"]),
            peer=peer,
        )
