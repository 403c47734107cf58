"""Management requests from the supervisor to the core of its own host.

One request on its own client socket, closed after the answer: the supervisor asks the core
which peers are registered (its health check) and tells it when a peer died, so that the
peer's in-flight requests complete with STATUS_CONNECTION_DISCONNECTED at once. The client
library (rdbss.client) sits above the daemon's processes and is not used here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq

from rdbss import requests as rq
from rdbss.actors.bus import (
    Endpoints,
    connect_client_socket,
    new_context,
    recv_frames,
    send_frames,
)
from rdbss.wire import (
    Codec,
    FsctlCode,
    NtStatus,
    RxCompletion,
    WireError,
    error_for_status,
    pack_frames,
    unpack_frames,
)

#: how much longer than the request's deadline the supervisor waits for the core's answer
GRACE_S = 2.0


def control(runtime_dir: Path, code: int, timeout: float, **args: Any) -> Any:
    """Send one management request (MRxDevFcbXXXControlFile) to the core serving
    ``runtime_dir`` and return its result. Raises an OSError: ``TimeoutError`` when there is no
    connection or no answer in time, ``NtStatusError`` for a failed request."""
    request = rq.control(code, int(timeout * 1000), **args)
    request.ctx.request_id = 1
    codec = Codec()
    zctx = new_context()
    try:
        sock = zctx.socket(zmq.DEALER)
        try:
            connect_client_socket(sock, Endpoints.in_dir(runtime_dir))
            # ZMQ_IMMEDIATE: a send waits for a connection, at most the request's timeout
            sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
            try:
                send_frames(sock, pack_frames(codec, request.ctx, None))
            except zmq.Again:
                raise TimeoutError(f"no connection to the core in {timeout:.1f} s") from None
            if not sock.poll(int((timeout + GRACE_S) * 1000)):
                raise TimeoutError(f"no answer from the core in {timeout + GRACE_S:.1f} s")
            done, payload = unpack_frames(codec, recv_frames(sock, 0))
        finally:
            sock.close(0)
    except WireError as exc:
        raise error_for_status(NtStatus.STATUS_INVALID_NETWORK_RESPONSE, str(exc)) from None
    finally:
        zctx.term()
    if not isinstance(done, RxCompletion) or done.request_id != request.ctx.request_id:
        raise error_for_status(NtStatus.STATUS_INVALID_NETWORK_RESPONSE, "an unexpected answer")
    if done.status not in request.ok:
        raise error_for_status(done.status, done.message)
    return request.parse(done, payload)


def registered_peers(runtime_dir: Path, timeout: float) -> dict[str, int | None]:
    """The peers registered with the core (mini-redirectors, connection manager): name -> pid."""
    status = control(runtime_dir, FsctlCode.RDBSS_STATUS, timeout)
    return {str(p["name"]): p.get("pid") for p in status["peers"]}


def peer_down(runtime_dir: Path, name: str, reason: str, timeout: float = 2.0) -> None:
    """Tell the core that the peer ``name`` is gone (its process exited or was stopped)."""
    control(runtime_dir, FsctlCode.RDBSS_PEER_DOWN, timeout, name=name, reason=reason)
