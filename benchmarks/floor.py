"""The floor of this architecture against rdbss, measured in the same run: a bare 3-process
ZeroMQ chain (client -> core -> backend over ipc, msgpack maps, the hot path on the socket's own
thread, no checks, no state) serving 4 KiB reads by ``os.pread`` and stats by ``os.lstat`` on the
same file, against rdbss's ``Client.read_handle`` and ``Client.stat`` through the daemon's local
mini-redirector. Prints one-at-a-time p50/p99 and the rate with 64 reads in flight, with the
ratio rdbss / floor (latency: lower is better; rate: higher is better). The two sides take turns
in short runs (CHUNK requests, ROUNDS rates) so that both meet the same load on a busy machine:
the ratio holds when the machine's speed drifts, the absolute figures do not. The chain carries
one request per message, as a plain request/response protocol does; rdbss bundles the requests
and answers in flight together, so with 64 in flight it can outrun this floor. Not a test.

    python -m benchmarks.floor [N]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import zmq

from rdbss import requests as rq
from rdbss.testing.daemon import running_daemon

BLOCK = 4096
FILE_BYTES = 16 << 20
IN_FLIGHT = 64
CHUNK = 100  # one-at-a-time requests a side runs before the other takes its turn
ROUNDS = 5  # rates a side measures, in turns; the median is shown


def _backend(address: str, path: str) -> None:
    """Answer {"op", "id", "off"} maps: a pread of BLOCK bytes, or an lstat's size and mtime."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(address)
    fd = os.open(path, os.O_RDONLY)
    while True:
        ident, frame = sock.recv_multipart()
        req = msgpack.unpackb(frame)
        if req["op"] == "stop":
            break
        if req["op"] == "read":
            data = os.pread(fd, BLOCK, req["off"])
            sock.send_multipart([ident, msgpack.packb({"id": req["id"], "st": 0}), data])
        else:
            st = os.lstat(path)
            answer = {"id": req["id"], "st": 0, "r": {"size": st.st_size, "mtime": st.st_mtime_ns}}
            sock.send_multipart([ident, msgpack.packb(answer)])
    os.close(fd)


def _core(front: str, back: str) -> None:
    """Forward each client's request to the backend under a core id, and each answer back."""
    ctx = zmq.Context.instance()
    clients = ctx.socket(zmq.ROUTER)
    clients.bind(front)
    backend = ctx.socket(zmq.DEALER)
    backend.connect(back)
    poller = zmq.Poller()
    poller.register(clients, zmq.POLLIN)
    poller.register(backend, zmq.POLLIN)
    waiting: dict[int, tuple[bytes, int]] = {}
    next_id = 0
    while True:
        for sock, _ in poller.poll():
            # drain what is there: one poll per message would measure the poller, not the chain
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if sock is clients:
                    ident, frame = frames
                    req = msgpack.unpackb(frame)
                    next_id += 1
                    waiting[next_id] = (ident, req["id"])
                    req["id"] = next_id
                    backend.send(msgpack.packb(req))
                    if req["op"] == "stop":
                        return
                else:
                    answer = msgpack.unpackb(frames[0])
                    ident, client_id = waiting.pop(answer["id"])
                    answer["id"] = client_id
                    clients.send_multipart([ident, msgpack.packb(answer), *frames[1:]])


class Chain:
    """The three processes; ``request`` is one round trip from this (the client) process."""

    def __init__(self, folder: Path, path: Path) -> None:
        front, back = f"ipc://{folder}/front", f"ipc://{folder}/back"
        spawn = mp.get_context("spawn")
        self.procs = [
            spawn.Process(target=_backend, args=(back, str(path)), daemon=True),
            spawn.Process(target=_core, args=(front, back), daemon=True),
        ]
        for proc in self.procs:
            proc.start()
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.connect(front)
        self.ids = 0

    def send(self, op: str, off: int = 0) -> None:
        self.ids += 1
        self.sock.send(msgpack.packb({"op": op, "id": self.ids, "off": off}))

    def receive(self) -> list[bytes]:
        frames: list[bytes] = self.sock.recv_multipart()
        return frames

    def request(self, op: str, off: int = 0) -> list[bytes]:
        self.send(op, off)
        return self.receive()

    def close(self) -> None:
        self.send("stop")
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        self.sock.close(0)


def _paired(
    ours: Callable[[int], object], floor: Callable[[int], object], n: int
) -> tuple[float, float, float, float]:
    """One-at-a-time latency of both sides, taking turns every CHUNK requests: (ours p50,
    ours p99, floor p50, floor p99) in microseconds."""
    times: tuple[list[int], list[int]] = ([], [])
    for fn in (ours, floor):
        for i in range(min(200, n)):  # warm-up
            fn(i)
    for start in range(0, n, CHUNK):
        for fn, out in zip((ours, floor), times, strict=True):
            for i in range(start, min(start + CHUNK, n)):
                t0 = time.perf_counter_ns()
                fn(i)
                out.append(time.perf_counter_ns() - t0)
    p50s, p99s = [], []
    for out in times:
        out.sort()
        p50s.append(statistics.median(out) / 1000)
        p99s.append(out[int(len(out) * 0.99)] / 1000)
    return p50s[0], p99s[0], p50s[1], p99s[1]


def _rate(send: Callable[[int], object], receive: Callable[[], object], n: int) -> float:
    """Requests answered per second with IN_FLIGHT outstanding."""
    t0 = time.perf_counter()
    for i in range(min(IN_FLIGHT, n)):
        send(i)
    for i in range(IN_FLIGHT, n):
        receive()
        send(i)
    for _ in range(min(IN_FLIGHT, n)):
        receive()
    return n / (time.perf_counter() - t0)


def run(n: int) -> list[tuple[str, float, float, float, float]]:
    """Rows of (figure, rdbss p50 or rate, rdbss p99, floor p50 or rate, floor p99)."""
    blocks = FILE_BYTES // BLOCK
    rows = []
    with running_daemon() as d, tempfile.TemporaryDirectory(prefix="rdf-", dir="/tmp") as tmp:
        path = d.share_dir / "floor.bin"
        path.write_bytes(os.urandom(FILE_BYTES))
        unc = d.share + r"\floor.bin"
        chain = Chain(Path(tmp), path)
        try:
            with d.client() as c:
                handle = c.create(unc)

                def ours_read(i: int) -> None:
                    c.read_handle(handle.fobx, (i % blocks) * BLOCK, BLOCK)

                def floor_read(i: int) -> None:
                    chain.request("read", (i % blocks) * BLOCK)

                def ours_stat(i: int) -> None:
                    c.stat(unc)

                def floor_stat(i: int) -> None:
                    chain.request("stat")

                for name, ours, floor in (
                    ("4 KiB read, one at a time (us)", ours_read, floor_read),
                    ("stat, one at a time (us)", ours_stat, floor_stat),
                ):
                    rows.append((name, *_paired(ours, floor, n)))
                pending: list[int] = []

                def ours_send(i: int) -> None:
                    req = rq.read(handle.fobx, (i % blocks) * BLOCK, BLOCK, 30_000)
                    pending.append(c.submit(req.ctx))

                def ours_receive() -> None:
                    c.collect(pending.pop(0))

                ours_rates, floor_rates = [], []
                for _ in range(ROUNDS):
                    ours_rates.append(_rate(ours_send, ours_receive, max(n // ROUNDS, IN_FLIGHT)))
                    floor_rates.append(
                        _rate(
                            lambda i: chain.send("read", (i % blocks) * BLOCK),
                            chain.receive,
                            max(n // ROUNDS, IN_FLIGHT),
                        )
                    )
                ours_rate = statistics.median(ours_rates)
                floor_rate = statistics.median(floor_rates)
                rows.append(
                    (f"4 KiB reads, {IN_FLIGHT} in flight (/s)", ours_rate, 0.0, floor_rate, 0.0)
                )
        finally:
            chain.close()
    return rows


def render(rows: list[tuple[str, float, float, float, float]]) -> str:
    lines = [
        f"{'figure':<34} {'rdbss p50':>10} {'p99':>8} {'floor p50':>10} {'p99':>8} "
        f"{'ratio p50':>9} {'ratio p99':>9}"
    ]
    for name, o50, o99, f50, f99 in rows:
        if o99 == 0.0:  # a rate
            lines.append(
                f"{name:<34} {o50:>10,.0f} {'':>8} {f50:>10,.0f} {'':>8} {o50 / f50:>8.2f}x"
            )
        else:
            lines.append(
                f"{name:<34} {o50:>10.0f} {o99:>8.0f} {f50:>10.0f} {f99:>8.0f} "
                f"{o50 / f50:>8.2f}x {o99 / f99:>8.2f}x"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"the floor: a bare 3-process ZeroMQ chain (msgpack, ipc); {count} requests per figure")
    print(render(run(count)))
