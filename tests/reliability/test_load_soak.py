"""Soak under mixed load (marked slow; run with: bash scripts/test.sh -m slow): a flooding
client (hundreds of reads in flight), a notify-heavy one (many pending change notifies on a
large folder, renewed as they complete) and a normal one (one write or read at a time) share a
daemon for a few minutes while the local mini-redirector is SIGKILLed 10 times and SIGSTOPped
twice at seeded random moments. The normal client may see errors only inside a fault window
(the fault and the few seconds its detection and restart take), and every write it saw
acknowledged reads back as written."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time

import pytest

from rdbss import requests as rq
from rdbss.aio import AsyncClient
from rdbss.wire import Access, CreateOptions
from tests.daemon import Daemon, running_daemon

SEED = 20261206
DURATION_S = 150.0
KILLS, STOPS = 10, 2
WINDOW_S = 6.0  # a fault's window: detection (a frozen one: 1.5 s), restart, reconnect
NAMES = 0x1 | 0x2
DIR = {"access": Access.FILE_LIST_DIRECTORY, "options": CreateOptions.FILE_DIRECTORY_FILE}


def fault_times(seed: int) -> list[tuple[float, signal.Signals]]:
    """Seeded fault moments, at least 9 s apart (the restart policy allows 5 in 30 s)."""
    rng = random.Random(seed)
    kinds = [signal.SIGKILL] * KILLS + [signal.SIGSTOP] * STOPS
    rng.shuffle(kinds)
    slot = (DURATION_S - 15.0) / len(kinds)
    return [(5.0 + i * slot + rng.uniform(0, slot - 9.0), sig) for i, sig in enumerate(kinds)]


def _flooder(d: Daemon, stop: threading.Event) -> None:
    async def main() -> None:
        async with AsyncClient(d.runtime_dir, timeout=5.0, shared_memory=False) as c:

            async def one() -> None:
                while not stop.is_set():
                    try:
                        h = await c.create(d.share + r"\flood.bin")
                        while not stop.is_set():
                            await c.read_handle(h.fobx, 0, 64 << 10)
                    except OSError:
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(one() for _ in range(256)))

    asyncio.run(main())


def _watcher(d: Daemon, stop: threading.Event) -> None:
    async def main() -> None:
        async with AsyncClient(d.runtime_dir, timeout=30.0) as c:

            async def one() -> None:
                while not stop.is_set():
                    try:
                        h = await c.create(d.share + r"\watched", **DIR)
                        while not stop.is_set():
                            await c.run(rq.notify(h.fobx, NAMES, 3_000))
                    except OSError:
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(one() for _ in range(100)))

    asyncio.run(main())


def _changer(d: Daemon, stop: threading.Event) -> None:
    k = 0
    while not stop.wait(0.2):
        (d.share_dir / "watched" / f"c{k % 50}").write_bytes(b"x" * (k % 7))
        k += 1


@pytest.mark.slow
@pytest.mark.timeout(DURATION_S + 240)
def test_mixed_clients_under_kills_and_freezes() -> None:
    with running_daemon() as d:
        (d.share_dir / "flood.bin").write_bytes(os.urandom(64 << 10))
        (d.share_dir / "watched").mkdir()
        for i in range(500):
            (d.share_dir / "watched" / f"e{i}").write_bytes(b"")
        (d.share_dir / "normal").mkdir()
        stop = threading.Event()
        helpers = [
            threading.Thread(target=f, args=(d, stop), daemon=True)
            for f in (_flooder, _watcher, _changer)
        ]
        for t in helpers:
            t.start()
        windows: list[tuple[float, float]] = []
        faults = fault_times(SEED)

        def inject() -> None:
            start = time.monotonic()
            for at, sig in faults:
                if stop.wait(max(0.0, start + at - time.monotonic())):
                    return
                try:
                    pid = d.child_pid("local")
                except (LookupError, OSError):
                    continue
                windows.append((time.monotonic(), time.monotonic() + WINDOW_S))
                os.kill(pid, sig)

        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
        acked: dict[str, bytes] = {}
        errors: list[tuple[float, float, str]] = []
        ok = 0
        rng = random.Random(SEED)
        end = time.monotonic() + DURATION_S
        try:
            with d.client(timeout=5.0) as c:
                k = 0
                while time.monotonic() < end:
                    began = time.monotonic()
                    name = d.share + rf"\normal\w{k}.bin"
                    data = rng.randbytes(rng.randrange(1, 64 << 10))
                    try:
                        c.write_bytes(name, data)
                        acked[name] = data
                        if k % 3 == 0 and acked:
                            back = rng.choice(list(acked))
                            assert c.read_bytes(back) == acked[back], back
                        ok += 1
                    except OSError as exc:
                        errors.append((began, time.monotonic(), repr(exc)[:160]))
                    k += 1
                    time.sleep(0.01)
        finally:
            stop.set()
            injector.join(10)
            for t in helpers:
                t.join(20)

        def in_window(began: float, ended: float) -> bool:
            return any(began <= w_end and ended >= w_start for w_start, w_end in windows)

        outside = [e for e in errors if not in_window(e[0], e[1])]
        assert len(windows) >= KILLS + STOPS - 1, windows
        assert not outside, outside[:5]
        assert ok > 500, (ok, errors[:5])
        with d.client(timeout=30.0) as c:
            for name, data in acked.items():
                assert c.read_bytes(name) == data, name
