"""A load: its clients (threads, each with its own ``Client``) running the seeded plan against
the daemon, open or closed loop, recording every operation.

Open loop (``model = "open"``): client ``i`` of ``n`` owns the slots ``t0 + (i + k n) / rate``;
it starts each operation at its slot, or at once when it is behind, and the latency counts from
the slot. A stalled backend therefore shows as latency growing with the stall, not as a few slow
operations, and the clients catch up afterwards (as wrk2 does). Closed loop (``"closed"``): each
client starts its next operation when the previous one ends (plus ``think_ms``), so throughput
falls with the backend and its recovery is visible.

Operations (``mix``): ``stat``, ``read`` (whole file), ``write`` (whole file, unique content, the
client's own files only), ``list`` (the folder, the set's prefix), ``open`` (create/close of an
existing file), ``create`` (a new scratch file), ``rename`` and ``delete`` (of a scratch file
this client created; when it has none, the operation creates one), ``lock`` (open, shared
byte-range lock and unlock, close; only backends with locks: local, SMB).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rdbss.client import Client
from rdbss.experiment.integrity import IntegrityModel
from rdbss.experiment.plan import (
    Op,
    file_name,
    file_path,
    iter_plan,
    scratch_path,
    write_content,
)
from rdbss.experiment.schema import LoadSpec
from rdbss.experiment.stats import OpRecord
from rdbss.wire.status import NtStatusError

RETRY_INTERVAL_S = 0.2
SCRATCH_SIZE = 128
LOCK_OFFSET = 1 << 40


def retry(
    what: str,
    func: Callable[[], Any],
    deadline: float,
    final: tuple[type[BaseException], ...] = (),
) -> Any:
    """``func()``, tried again on failure every 0.2 s until ``deadline`` (at least once);
    exceptions in ``final`` are not retried."""
    while True:
        try:
            return func()
        except final:
            raise
        except (NtStatusError, OSError) as exc:
            if time.monotonic() + RETRY_INTERVAL_S >= deadline:
                raise RuntimeError(f"{what}: still failing at the deadline: {exc}") from exc
            time.sleep(RETRY_INTERVAL_S)


class Load:
    """One load of a run: ``create_file_set()`` before, ``worker(i)`` per client thread,
    ``records`` after. ``connect(timeout)`` makes a Client of the run's daemon."""

    def __init__(
        self,
        spec: LoadSpec,
        connect: Callable[[float], Client],
        stop: threading.Event,
    ) -> None:
        self.spec = spec
        self.connect = connect
        self.stop = stop
        self.model = IntegrityModel()
        self.records: list[list[OpRecord]] = [[] for _ in range(spec.clients)]
        self.errors: list[str] = []
        self.t0 = 0.0
        self.failures = [0] * spec.clients
        self._scratch: list[deque[str]] = [deque() for _ in range(spec.clients)]

    # ------------------------------------------------------------------ the file set
    def create_file_set(self, deadline: float) -> None:
        load = self.spec
        with self.connect(load.timeout_s) as c:

            def make_root() -> None:
                if not c.exists(load.root):
                    c.mkdir(load.root, parents=True, exist_ok=True)

            retry(f"creating {load.root}", make_root, deadline)
            for index in range(load.files.count):
                content = write_content(load, -1, index, index)
                path = file_path(load, index)
                retry(f"writing {path}", functools.partial(c.write_bytes, path, content), deadline)
                self.model.acknowledged(file_name(load, index), content, -1.0)

    # ------------------------------------------------------------------ the clients
    def worker(self, client_index: int) -> None:
        try:
            with self.connect(self.spec.timeout_s) as client:
                self._loop(client, client_index)
        except Exception as exc:  # recorded in the report; the other clients go on
            self.errors.append(f"{self.spec.name} client {client_index}: {exc!r}")

    def _loop(self, client: Client, client_index: int) -> None:
        load = self.spec
        records = self.records[client_index]
        end = self.t0 + load.duration_s
        open_loop = load.model == "open"
        interval = load.clients / load.rate if open_loop else 0.0
        slot = self.t0 + client_index * interval / load.clients
        think = load.think_ms / 1000.0
        for op in iter_plan(load, client_index):
            if open_loop:
                if slot >= end:
                    break
                wait = slot - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    break
                intended, slot = slot, slot + interval
            else:
                intended = time.monotonic()
            if intended >= end or self.stop.is_set():
                break
            records.append(self._execute(client, op, intended))
            if think and self.stop.wait(think):
                break

    def _execute(self, client: Client, op: Op, intended: float) -> OpRecord:
        load = self.spec
        started = time.monotonic()
        status: str | None = None
        content = b""
        try:
            if op.kind == "write":
                content = write_content(load, op.client, op.seq, op.file)
                client.write_bytes(file_path(load, op.file), content)
            else:
                self._run(client, op)
        except NtStatusError as exc:
            status = exc.status_name
        except Exception as exc:  # recorded, by type: the load goes on
            status = type(exc).__name__
        ended = time.monotonic()
        if status is not None:
            self.failures[op.client] += 1
        if op.kind == "write":
            name = file_name(load, op.file)
            if status is None:
                self.model.acknowledged(name, content, ended - self.t0)
            else:
                self.model.failed(name, content)
        t0 = self.t0
        return OpRecord(
            load.name,
            op.client,
            op.seq,
            op.kind,
            op.file,
            intended - t0,
            started - t0,
            ended - t0,
            status,
        )

    def _run(self, client: Client, op: Op) -> None:
        load = self.spec
        scratch = self._scratch[op.client]
        if op.kind == "stat":
            client.stat(file_path(load, op.file))
        elif op.kind == "read":
            client.read_bytes(file_path(load, op.file))
        elif op.kind == "list":
            client.listdir(load.root, f"{load.files.prefix}*")
        elif op.kind == "open":
            handle = client.create(file_path(load, op.file))
            client.close_handle(handle.fobx)
        elif op.kind == "lock":
            handle = client.create(file_path(load, op.file))
            try:
                # beyond the data, so it never conflicts with another client's write
                client.lock(handle.fobx, LOCK_OFFSET + op.client, 1, exclusive=False)
                client.unlock(handle.fobx, LOCK_OFFSET + op.client, 1)
            finally:
                client.close_handle(handle.fobx)
        elif op.kind == "create" or not scratch:
            path = scratch_path(load, op.client, op.seq)
            client.write_bytes(path, path.encode()[-SCRATCH_SIZE:])
            scratch.append(path)
        elif op.kind == "rename":
            source = scratch.popleft()  # unknown after a failure: not used again
            target = scratch_path(load, op.client, op.seq)
            client.rename(source, target)
            scratch.append(target)
        else:  # delete
            client.remove(scratch.popleft())

    # ------------------------------------------------------------------ after the run
    def all_records(self) -> list[OpRecord]:
        return sorted((r for rs in self.records for r in rs), key=lambda r: r.end)

    def ops_done(self) -> tuple[int, int]:
        """(operations, errors) so far, for the progress line (each client counts its own)."""
        return sum(len(rs) for rs in self.records), sum(self.failures)
