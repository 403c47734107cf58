"""Timestamps at each hop of a request, for ``python -m benchmarks hops`` only.

Loaded by the daemon's processes when ``python -m benchmarks hops`` puts this folder first on
their PYTHONPATH and sets RDBSS_HOPS_OUT: it wraps the functions a request passes through (core,
mini-redirector host, worker, SFTP loop) so each records ``perf_counter_ns`` (CLOCK_MONOTONIC:
comparable between processes of one host) and writes them to RDBSS_HOPS_OUT/ev-PID.txt. Nothing
in rdbss itself is changed, so the hot path carries no instrumentation.
"""

from __future__ import annotations

import os

OUT = os.environ.get("RDBSS_HOPS_OUT")


def install(out: str) -> None:
    import atexit
    import contextlib
    import functools
    import threading
    import time
    from collections.abc import Callable
    from typing import Any

    from rdbss import client
    from rdbss.actors import core_server, minirdr_host, peer
    from rdbss.minirdrs.sftp import loop
    from rdbss.minirdrs.sftp import minirdr as sftp_minirdr

    events: list[tuple[int, str]] = []
    now = time.perf_counter_ns
    lock = threading.Lock()

    def record(name: str) -> None:
        events.append((now(), name))

    def flush() -> None:
        with lock:
            taken = events[:]
            del events[: len(taken)]
        with contextlib.suppress(OSError), open(f"{out}/ev-{os.getpid()}.txt", "a") as f:
            f.writelines(f"{t} {name}\n" for t, name in taken)  # gone once the benchmark ended

    def wrap(cls: Any, method: str, before: str | None, after: str | None = None) -> None:
        original: Callable[..., Any] = getattr(cls, method)

        @functools.wraps(original)
        def traced(*args: Any, **kwargs: Any) -> Any:
            if before:
                record(before)
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    record(after)

        setattr(cls, method, traced)

    wrap(core_server.CoreServer, "_on_client_frames", "core receives the request")
    wrap(core_server.CoreServer, "to_peer", "core sends to the mini-redirector")
    wrap(minirdr_host.MiniRdrHost, "on_message", "host I/O thread receives")
    wrap(minirdr_host.ConnectionWorker, "on_receive", "worker starts")
    wrap(loop.LoopThread, "run", None, "worker resumes")
    wrap(peer.PeerBridge, "post", "answer posted")
    wrap(core_server.CoreServer, "_on_bus_frames", "core receives the answer")
    wrap(core_server.CoreServer, "to_client", "core sends the answer")
    wrap(client.Client, "stat", "client sends", "client receives")

    submit = loop.LoopThread.submit

    def traced_submit(self: loop.LoopThread, factory: Callable[[], Any]) -> Any:
        async def timed() -> Any:
            record("loop starts the coroutine")
            return await factory()

        return submit(self, timed)

    loop.LoopThread.submit = traced_submit  # type: ignore[method-assign]
    locate = sftp_minirdr.alocate

    async def traced_locate(*args: Any, **kwargs: Any) -> Any:
        try:
            return await locate(*args, **kwargs)
        finally:
            record("server answered")

    sftp_minirdr.alocate = traced_locate
    send_frames = peer.send_frames

    def traced_send(sock: Any, frames: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            record("host I/O thread forwards the answer")
        return send_frames(sock, frames, *args, **kwargs)

    peer.send_frames = traced_send

    def flusher() -> None:
        while True:
            time.sleep(0.5)
            flush()

    threading.Thread(target=flusher, name="hops-trace", daemon=True).start()
    atexit.register(flush)


if OUT:
    install(OUT)
