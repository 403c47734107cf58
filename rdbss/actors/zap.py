"""ZAP (ZeroMQ authentication protocol, RFC 27) handler for the core's tcp:// sockets.

libzmq asks this handler about every CURVE handshake on a socket with a ZAP domain ("peer" or
"client"); the handler answers from the allow-list (rdbss.keys), re-read when the file changes,
so a key can be added or revoked without restarting the daemon. A refused handshake never
creates a connection: the core does not see a single frame from that key. The User-Id of an
accepted connection is the client's public key (Z85): the core checks every message against
that key's grant.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import zmq
from zmq.utils import z85

from rdbss.keys import Grant, KeyFileError, load_authorized_keys

log = logging.getLogger("rdbss.auth")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PEER_DOMAIN = "peer"
CLIENT_DOMAIN = "client"


class AllowList:
    """The allow-list file, re-read when its mtime or size changes. A file that becomes invalid
    keeps the last good list (and logs why)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = self._read_stamp()
        try:
            self.grants: dict[bytes, Grant] = load_authorized_keys(path)
        except KeyFileError as exc:
            # the core still serves this host; nobody gets in over tcp:// until the file is
            # fixed (it is read again when it changes)
            log.error("allow-list refused, no key admitted until it is fixed: %s", exc)
            self.grants = {}

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def refresh(self) -> None:
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.grants = load_authorized_keys(self.path)
            log.info("allow-list %s reloaded: %d keys", self.path, len(self.grants))
        except KeyFileError as exc:
            log.error("allow-list not reloaded, keeping the previous one: %s", exc)

    def grant(self, user_id: object) -> Grant | None:
        """The grant of a connection's User-Id (the Z85 key the ZAP handler put there)."""
        if not isinstance(user_id, str) or not user_id:
            return None
        return self.grants.get(user_id.encode())


class ZapHandler:
    """Answers ZAP requests on its own thread (a handshake must not wait for the core's loop)."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], allow: AllowList) -> None:
        self.allow = allow
        self._sock = zctx.socket(zmq.REP)
        self._sock.linger = 0
        self._sock.bind(ZAP_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        else:
            self._sock.close(0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._sock.poll(100):
                    continue
                self._sock.send_multipart(self.decide(self._sock.recv_multipart()))
        except zmq.ZMQError as exc:  # the context is going away
            log.debug("zap handler stopped: %s", exc)
        finally:
            self._sock.close(0)

    def decide(self, request: list[bytes]) -> list[bytes]:
        """One ZAP request -> its reply: 200 with the key as User-Id, or 400."""
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, raw_address, _identity, mechanism = request[:6]
        credentials = request[6:]
        address = raw_address.decode(errors="replace")

        def reply(code: bytes, text: str, user: bytes = b"") -> list[bytes]:
            return [version, request_id, code, text.encode(), user, b""]

        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            log.warning(
                "refused %s from %s: not CURVE", mechanism.decode(errors="replace"), address
            )
            return reply(b"400", "CURVE required")
        self.allow.refresh()
        key = z85.encode(credentials[0])
        grant = self.allow.grants.get(key)
        where = domain.decode(errors="replace")
        if grant is None:
            log.warning("refused unknown key %s from %s on %s", key.decode(), address, where)
            return reply(b"400", "unknown key")
        allowed = grant.client if where == CLIENT_DOMAIN else bool(grant.peers)
        if where not in (CLIENT_DOMAIN, PEER_DOMAIN) or not allowed:
            log.warning("refused key %s (%s) on %s: not granted", grant.label, address, where)
            return reply(b"400", f"key not granted for {where}")
        log.info("accepted key %s from %s on %s", grant.label, address, where)
        return reply(b"200", "OK", key)
