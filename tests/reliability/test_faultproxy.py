"""The network fault proxy (rdbss/faultproxy.py) against a real echo server started here and
against the real Samba fixture: latency, bandwidth, reset, black hole and refuse are functional
checks of the fault (orderings with a large margin, measured in the same run against a direct
connection), never performance targets. Loopback only; everything stopped with deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdbss.faultproxy import (
    Delays,
    FaultProxy,
    ProxySettings,
    apply_settings,
    control_request,
    parse_address,
    parse_control,
)
from tests.servers.fixtures import SambaServer, require_or_skip

LOOPBACK = "127.0.0.1"
IO_TIMEOUT_S = 10.0
MIB = 1 << 20


# ------------------------------------------------------------------------------ echo server
class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IO_TIMEOUT_S)  # a handler never outlives the test by more than this
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer((LOOPBACK, 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield LOOPBACK, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    p = FaultProxy(*echo, seed=7).start()
    try:
        yield p
    finally:
        started = time.monotonic()
        p.stop()
        assert time.monotonic() - started < 6


def connect(port: int, timeout: float = IO_TIMEOUT_S) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=timeout)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        data = sock.recv(min(65536, n - got))
        if not data:
            raise ConnectionError(f"EOF after {got} of {n} bytes")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - started


def echo_transfer(port: int, size: int) -> float:
    """Send ``size`` bytes while reading the echo; seconds until the last byte came back."""
    payload = os.urandom(size)
    with connect(port) as sock:
        started = time.monotonic()
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        back = recv_exactly(sock, size)
        elapsed = time.monotonic() - started
        sender.join(IO_TIMEOUT_S)
        assert not sender.is_alive()
    assert back == payload
    return elapsed


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


# ------------------------------------------------------------------------------ pure parts
def test_settings_are_validated_and_merged() -> None:
    s = apply_settings(ProxySettings(), {"latency_ms": 5, "refuse": True})
    assert s.latency_ms == 5.0 and s.refuse and s.bandwidth == 0
    assert apply_settings(s, {"refuse": False}).latency_ms == 5.0
    for bad in ({"latency_ms": -1}, {"refuse": 1}, {"bogus": 1}, {"bandwidth": True}):
        with pytest.raises(ValueError):
            apply_settings(s, bad)
    assert parse_control("set latency_ms=20 blackhole=true") == {
        "cmd": "set",
        "latency_ms": 20,
        "blackhole": True,
    }
    assert parse_control('{"cmd": "stats"}') == {"cmd": "stats"}
    with pytest.raises(ValueError):
        parse_control("set latency_ms")
    assert parse_address("127.0.0.1:0", loopback=True) == ("127.0.0.1", 0)
    with pytest.raises(ValueError):
        parse_address("10.1.2.3:80", loopback=True)
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 1, host="0.0.0.0")


def test_jitter_draws_repeat_with_the_seed() -> None:
    a, b, c = Delays(3), Delays(3), Delays(4)
    draws_a = [a.next(10, 50) for _ in range(20)]
    assert draws_a == [b.next(10, 50) for _ in range(20)]
    assert draws_a != [c.next(10, 50) for _ in range(20)]
    assert all(0.010 <= d <= 0.060 for d in draws_a)
    a.reseed(3)
    assert [a.next(10, 50) for _ in range(20)] == draws_a
    assert Delays(1).next(25, 0) == 0.025


# ------------------------------------------------------------------------------ echo server
def test_forwards_both_ways_and_counts(proxy: FaultProxy) -> None:
    payload = os.urandom(300_000)
    with connect(proxy.port) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        stats = proxy.stats()
        assert stats["accepted"] == 1 and stats["active"] == 1
        sock.shutdown(socket.SHUT_WR)  # half-close travels through; the echo closes in turn
        assert sock.recv(10) == b""
    wait_for(lambda: proxy.stats()["active"] == 0)
    stats = proxy.stats()
    assert stats["bytes_up"] == stats["bytes_down"] == len(payload)


def test_latency_is_added_to_each_direction(proxy: FaultProxy, echo: tuple[str, int]) -> None:
    with connect(echo[1]) as direct, connect(proxy.port) as proxied:
        base = statistics.median(round_trip(direct) for _ in range(5))
        round_trip(proxied)
        proxy.set(latency_ms=200)
        slow = statistics.median(round_trip(proxied) for _ in range(3))
        proxy.set(latency_ms=0)
        fast_again = round_trip(proxied)
    # 200 ms one way, each way: a round trip gains about 400 ms
    assert slow > 0.35 > base
    assert slow > base + 0.3
    assert fast_again < slow


def test_bandwidth_limit_slows_a_transfer_to_about_the_rate(
    proxy: FaultProxy, echo: tuple[str, int]
) -> None:
    direct = echo_transfer(echo[1], MIB)
    unlimited = echo_transfer(proxy.port, MIB)
    proxy.set(bandwidth=MIB)  # 1 MiB/s each way: 1 MiB echoed takes about 1 s
    limited = echo_transfer(proxy.port, MIB)
    assert limited > 0.6
    assert limited < 6.0  # roughly the rate: not stalled
    assert limited > 2 * max(direct, unlimited)


def test_reset_makes_the_client_see_a_reset(proxy: FaultProxy) -> None:
    with connect(proxy.port) as a, connect(proxy.port) as b:
        round_trip(a)
        round_trip(b)
        assert proxy.set(reset=True)["latency_ms"] == 0
        for sock in (a, b):
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
    assert proxy.stats()["reset"] == 2
    with connect(proxy.port) as c:  # new connections work at once
        round_trip(c)


def test_black_hole_hangs_connections_until_it_ends(proxy: FaultProxy) -> None:
    with connect(proxy.port, timeout=1.0) as old:
        round_trip(old)
        proxy.set(blackhole=True)
        old.sendall(b"lost in space")
        with pytest.raises(TimeoutError):
            old.recv(100)
        with connect(proxy.port, timeout=1.0) as new:  # the kernel accepts; nothing answers
            new.sendall(b"hello?")
            with pytest.raises(TimeoutError):
                new.recv(100)
            proxy.set(blackhole=False)
            new.settimeout(IO_TIMEOUT_S)
            assert recv_exactly(new, 6) == b"hello?"  # held, not dropped
        old.settimeout(IO_TIMEOUT_S)
        assert recv_exactly(old, 13) == b"lost in space"


def test_refuse_closes_new_connections_and_keeps_current_ones(proxy: FaultProxy) -> None:
    with connect(proxy.port) as current:
        round_trip(current)
        proxy.set(refuse=True)
        try:  # the RST may already be there when connect() returns
            with connect(proxy.port) as refused:
                data = refused.recv(10)
        except ConnectionResetError:
            data = b""
        assert data == b""
        round_trip(current)
        proxy.set(refuse=False)
        with connect(proxy.port) as fine:
            round_trip(fine)
    assert proxy.stats()["refused"] == 1


def test_stop_ends_hung_connections_within_its_deadline(echo: tuple[str, int]) -> None:
    p = FaultProxy(*echo).start()
    port = p.port
    sock = connect(port, timeout=IO_TIMEOUT_S)
    try:
        round_trip(sock)
        p.set(blackhole=True)
        sock.sendall(b"x" * 1000)
        started = time.monotonic()
        p.stop(timeout=5.0)
        assert time.monotonic() - started < 5.5
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
    finally:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=2).close()
    assert p.stopped.is_set()


def test_command_line_proxy_driven_through_its_control_socket(echo: tuple[str, int]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rdbss.faultproxy",
            "--listen",
            "127.0.0.1:0",
            "--target",
            f"{echo[0]}:{echo[1]}",
            "--control",
            "127.0.0.1:0",
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the proxy printed no banner"
        banner = json.loads(proc.stdout.readline())
        assert banner["pid"] == proc.pid
        port = parse_address(banner["listen"])[1]
        control = banner["control"]
        with connect(port) as sock:
            base = round_trip(sock)
            reply = control_request(control, "set latency_ms=150")
            assert reply == {
                "ok": True,
                "settings": {**ProxySettings().to_dict(), "latency_ms": 150},
            }
            assert round_trip(sock) > max(0.25, base)
            stats = control_request(control, {"cmd": "stats"})["stats"]
            assert stats["accepted"] == 1 and stats["bytes_up"] == 8
            assert control_request(control, "bogus")["ok"] is False
            assert control_request(control, '{"cmd": "set", "refuse": 3}')["ok"] is False
            assert control_request(control, "reset") == {"ok": True, "reset": 1}
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        assert control_request(control, "stop")["ok"] is True
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ------------------------------------------------------------------------------ Samba
@pytest.fixture(scope="module")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaServer]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    with SambaServer(tmp_path_factory.mktemp("samba-proxy")) as srv:
        yield srv


def _smb_session(srv: SambaServer, port: int, timeout: int = 5) -> dict[str, Any]:
    import smbclient

    cache: dict[str, Any] = {}
    smbclient.register_session(
        srv.host,
        username=srv.user,
        password=srv.password,
        port=port,
        connection_cache=cache,
        connection_timeout=timeout,
    )
    return cache


def _smb_stat_s(srv: SambaServer, port: int, cache: dict[str, Any], name: str) -> float:
    import smbclient

    started = time.monotonic()
    smbclient.stat(rf"\\{srv.host}\{srv.share_name}\{name}", port=port, connection_cache=cache)
    return time.monotonic() - started


def _close_smb(cache: dict[str, Any]) -> None:
    import smbclient

    with contextlib.suppress(Exception):  # the proxy may have reset it: nothing closes cleanly
        smbclient.reset_connection_cache(connection_cache=cache)


def test_samba_through_the_proxy(samba: SambaServer) -> None:
    import smbclient
    from smbprotocol.exceptions import SMBConnectionClosed, SMBException

    name = f"proxy-{uuid.uuid4().hex[:8]}.bin"
    payload = os.urandom(200_000)
    with FaultProxy(samba.host, samba.port, seed=1) as p:
        direct = _smb_session(samba, samba.port)
        proxied = _smb_session(samba, p.port)
        try:
            path = rf"\\{samba.host}\{samba.share_name}\{name}"
            with smbclient.open_file(path, "wb", port=p.port, connection_cache=proxied) as f:
                f.write(payload)
            assert (samba.share_path / name).read_bytes() == payload
            assert p.stats()["bytes_up"] > len(payload)

            base = statistics.median(_smb_stat_s(samba, samba.port, direct, name) for _ in range(3))
            p.set(latency_ms=200)
            slow = _smb_stat_s(samba, p.port, proxied, name)
            assert slow > 0.35 > base  # a stat is several round trips, each + 400 ms
            p.set(latency_ms=0)

            p.set(reset=True)
            with pytest.raises((SMBConnectionClosed, SMBException, OSError)):
                _smb_stat_s(samba, p.port, proxied, name)
        finally:
            _close_smb(proxied)
            _close_smb(direct)

        p.set(refuse=True)
        # accepted, then a RST at once: smbprotocol reports it by timing as a failed connect
        # (ValueError), a closed connection, or the raw socket error of its send
        with pytest.raises((SMBConnectionClosed, ValueError, OSError)):
            _close_smb(_smb_session(samba, p.port))
        p.set(refuse=False, blackhole=True)
        started = time.monotonic()
        with pytest.raises(SMBException, match="timeout"):
            _close_smb(_smb_session(samba, p.port, timeout=1))  # hangs until its 1 s timeout
        assert 0.9 < time.monotonic() - started < 10
        p.set(blackhole=False)
        again = _smb_session(samba, p.port)
        try:
            assert _smb_stat_s(samba, p.port, again, name) < 30
        finally:
            _close_smb(again)
    (samba.share_path / name).unlink()


def test_smbclient_cli_through_the_proxy(samba: SambaServer, tmp_path: Path) -> None:
    from tests.servers.fixtures import find_binary

    cli = find_binary("smbclient")
    if cli is None:
        require_or_skip(["smbclient"], "smbclient CLI")
    assert cli is not None
    auth = tmp_path / "auth.txt"
    auth.write_text(f"username = {samba.user}\npassword = {samba.password}\ndomain = WORKGROUP\n")
    auth.chmod(0o600)
    conf = tmp_path / "client.conf"
    conf.write_text("[global]\n    client min protocol = SMB2_10\n")

    unc = f"//{samba.host}/{samba.share_name}"

    def run(port: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, "-s", str(conf), "-A", str(auth), "-p", str(port), "-c", "ls", unc],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    with FaultProxy(samba.host, samba.port) as p:
        ok = run(p.port)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        p.set(refuse=True)
        refused = run(p.port)
        assert refused.returncode != 0
        assert p.stats()["refused"] >= 1


def test_slow_close_delays_the_close_reaching_the_other_side(proxy: FaultProxy) -> None:
    """The client half-closes; the echo server sees EOF and closes; the client sees that close
    only after slow_close_ms each way (and at once without it)."""

    def close_seen_after() -> float:
        with connect(proxy.port) as sock:
            assert round_trip(sock) < 1.0
            started = time.monotonic()
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""  # the server's close, passed on
            return time.monotonic() - started

    assert close_seen_after() < 0.15
    proxy.set(slow_close_ms=300)
    assert 0.55 <= close_seen_after() < 2.0  # 300 ms up, 300 ms down
    proxy.set(slow_close_ms=0)
    assert close_seen_after() < 0.15
