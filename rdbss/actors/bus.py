"""ZeroMQ plumbing shared by every process: the context, socket options, endpoints and the
runtime directory. LINGER defaults to -1, which makes ``term()`` wait for unsent messages
forever, so it is 0 here; ROUTER_MANDATORY turns a send to a gone peer into an error
instead of a silent drop; heartbeats detect a frozen peer."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from rdbss.wire.codec import DEFAULT_LIMITS

MAX_IPC_PATH = 107

# zmq's flags and options as plain ints: pyzmq's own send_multipart/recv_multipart do IntFlag
# arithmetic and checks on every call, several microseconds a message on the hot path
NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: pyzmq's send without its Python layer (``zmq.Socket.send`` adds routing ids and groups,
#: for socket types rdbss does not use, to the Cython send): half a microsecond a frame
raw_send = zmq.backend.Socket.send
#: frames shorter than this are copied into the message: pyzmq copies them anyway below its
#: copy threshold (this size), and its zero-copy path costs more to get there
COPY_BELOW = 64 << 10
HEARTBEAT_IVL_MS = 500
HEARTBEAT_TIMEOUT_MS = 2_000


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """CURVE keys of one socket (Z85). ``server`` is the public key of the server a connecting
    socket expects; None on the listening side."""

    public: bytes
    secret: bytes
    server: bytes | None = None


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a daemon's sockets live. ``client`` faces clients; ``bus`` faces the daemon's own
    processes (mini-redirectors, connection manager). On a node (a host running only
    mini-redirectors), ``bus`` is the core's tcp:// peer port and ``curve`` the node's keys."""

    runtime_dir: Path
    client: str
    bus: str
    curve: CurveKeys | None = None

    @classmethod
    def in_dir(cls, runtime_dir: Path) -> Endpoints:
        client = f"ipc://{runtime_dir / 'rdbss.sock'}"
        bus = f"ipc://{runtime_dir / 'bus.sock'}"
        for endpoint in (client, bus):
            if len(endpoint) - len("ipc://") > MAX_IPC_PATH:
                raise ValueError(
                    f"runtime directory {runtime_dir} is too long for a Unix socket path "
                    f"(limit {MAX_IPC_PATH} characters); choose a shorter runtime_dir"
                )
        return cls(runtime_dir, client, bus)


def alive_file(runtime_dir: Path, name: str) -> Path:
    """Where a peer process (a mini-redirector, the connection manager) says it is alive
    (touched by its watchdog, rdbss.actors.peer) and whether it hears the core; the
    supervisor reads it."""
    return runtime_dir / "peers" / f"{name}.json"


def ensure_runtime_dir(path: Path) -> Path:
    """Create the runtime directory (mode 0700) or check that an existing one is private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"runtime directory {path} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def daemon_pid(runtime_dir: Path) -> int | None:
    """The pid of the live daemon owning ``runtime_dir``, or None. Liveness is the supervisor's
    lock on ``daemon.lock``, which the kernel releases when it exits (even as a zombie)."""
    try:
        fd = os.open(runtime_dir / "daemon.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int((runtime_dir / "daemon.pid").read_text().strip())
            except (OSError, ValueError):
                return -1  # locked, pid not written yet: running, starting up
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def client_identity(pid: int, start_time: int, nonce: bytes) -> bytes:
    """A local client's socket identity: it carries the pid and the process start time so the
    core can tell when the client process is gone (and close what it left open)."""
    return b"c" + pid.to_bytes(4, "big") + start_time.to_bytes(8, "big") + nonce


def process_start_time(pid: int) -> int | None:
    """Clock ticks after boot at which ``pid`` started (/proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def client_alive(ident: bytes) -> bool:
    """False only for a local client identity whose process is known to be gone."""
    if len(ident) < 13 or ident[:1] != b"c":
        return True  # not one of ours (e.g. a remote client): cannot tell, assume alive
    pid = int.from_bytes(ident[1:5], "big")
    started = int.from_bytes(ident[5:13], "big")
    return process_start_time(pid) == started


def connect_client_socket(sock: zmq.Socket[Any], endpoints: Endpoints) -> None:
    """A client DEALER: an identity carrying this process's pid and start time (so the daemon
    can close what the process leaves open if it dies), unbounded receive queue. To another
    host: CURVE, and a random identity (the daemon probes a remote client's liveness).

    Messages go only on a connection whose handshake succeeded (ZMQ_IMMEDIATE; ``rdbss.link``
    says why), and heartbeats notice a core that stopped answering (frozen, or a cut link)."""
    if endpoints.curve is not None:
        assert endpoints.curve.server is not None
        sock.setsockopt(zmq.IDENTITY, b"t" + os.urandom(16))
        sock.setsockopt(zmq.CURVE_SERVERKEY, endpoints.curve.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, endpoints.curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, endpoints.curve.secret)
    else:
        pid = os.getpid()
        identity = client_identity(pid, process_start_time(pid) or 0, os.urandom(4))
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.connect(endpoints.client)


def send_frames(
    sock: zmq.Socket[bytes], frames: Sequence[Any], flags: int = 0, *, copy: bool = False
) -> None:
    """``send_multipart`` for frames known to be buffers. libzmq queues a multipart message
    whole or not at all (the first frame decides), as ``send_multipart`` does. With
    ``copy=False``, frames under ``COPY_BELOW`` are copied anyway (cheaper than tracking
    them); larger ones go without a copy."""
    last = len(frames) - 1
    more = flags | _SNDMORE
    for i, frame in enumerate(frames):
        raw_send(sock, frame, more if i < last else flags, copy or len(frame) < COPY_BELOW)


def recv_frames(sock: zmq.Socket[bytes], flags: int = NOBLOCK) -> list[zmq.Frame]:
    """``recv_multipart(copy=False)`` without its per-call overhead; raises ``zmq.Again`` when
    nothing is there (the rest of a multipart message always is once its first frame is)."""
    frame = sock.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame)
    return frames


def drain(sock: zmq.Socket[bytes], limit: int = 256) -> Iterator[list[zmq.Frame]]:
    """The messages waiting on ``sock`` (a poll said it is readable), at most ``limit`` of them
    so that another socket gets its turn."""
    for n in range(limit):
        if n and not readable(sock):
            return
        try:
            yield recv_frames(sock, NOBLOCK)
        except zmq.Again:
            return


def readable(sock: zmq.Socket[bytes]) -> bool:
    """A message is waiting (cheaper than a receive that raises ``zmq.Again``)."""
    events = sock.getsockopt(_EVENTS)
    return isinstance(events, int) and bool(events & _POLLIN)


def new_context() -> zmq.Context[zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ctx.setsockopt(zmq.LINGER, 0)
    return ctx


def router(
    ctx: zmq.Context[zmq.Socket[bytes]],
    endpoint: str,
    *,
    untrusted: bool,
    curve: CurveKeys | None = None,
    zap_domain: str | None = None,
) -> zmq.Socket[bytes]:
    """A listening ROUTER. With ``curve`` it is a CURVE server whose handshakes the ZAP handler
    of ``zap_domain`` decides (rdbss.actors.zap)."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # a peer that reconnects (restarted, or its link came back) takes its name over at once
    # instead of being refused until the old connection times out
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if curve is not None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, (zap_domain or "").encode())
    elif endpoint.startswith("tcp://"):
        raise ValueError(f"{endpoint}: a tcp:// endpoint needs CURVE keys")
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    if untrusted:
        # header + payload + slack; anything larger is dropped by libzmq before we see it
        sock.setsockopt(zmq.MAXMSGSIZE, DEFAULT_LIMITS.max_payload_bytes + (2 << 20))
    sock.bind(endpoint)
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://") :], 0o600)
    return sock


def dealer(
    ctx: zmq.Context[zmq.Socket[bytes]],
    endpoint: str,
    identity: bytes | None = None,
    curve: CurveKeys | None = None,
) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if curve is not None:
        if curve.server is None:
            raise ValueError("a CURVE client needs the server's public key")
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
    elif endpoint.startswith("tcp://"):
        raise ValueError(f"{endpoint}: a tcp:// endpoint needs CURVE keys")
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2_000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.connect(endpoint)
    return sock
