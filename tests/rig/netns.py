"""Hosts for multi-host tests: Linux network namespaces joined by a veth pair, made by the test
itself (root and iproute2 needed). Each host has its own network stack (its own loopback, its
own address on the link); the file system is shared, so ipc:// sockets still work inside a
host's runtime directory and the test can look at every host's files.

    with NetnsRig(hosts=2) as rig:
        a, b = rig.hosts
        proc = a.popen([...])          # runs inside host a
        rig.cut()                       # the link between the hosts goes down
        rig.restore()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


class RigUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no iproute2)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


@dataclass
class Host:
    name: str  # the namespace
    address: str  # on the rig's link
    link: str  # its end of the veth pair
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside this host; stopped (by pid) when the rig closes."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class NetnsRig:
    """Two hosts on one link: 10.X.Y.1 and 10.X.Y.2/24 (X.Y from a random id)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        net = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
        self.hosts = [
            Host(f"rdbss-{tag}-a", f"{net}.1", f"rv{tag}a"),
            Host(f"rdbss-{tag}-b", f"{net}.2", f"rv{tag}b"),
        ]

    def __enter__(self) -> NetnsRig:
        if os.geteuid() != 0:
            raise RigUnavailable("network namespaces need root")
        a, b = self.hosts
        try:
            for host in self.hosts:
                _ip("netns", "add", host.name)
            _ip("link", "add", a.link, "netns", a.name, "type", "veth", "peer", "name", b.link,
                "netns", b.name)  # fmt: skip
            for host in self.hosts:
                _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", host.link)
                _ip("-n", host.name, "link", "set", "lo", "up")
                _ip("-n", host.name, "link", "set", host.link, "up")
        except (OSError, subprocess.CalledProcessError) as exc:
            self.close()
            detail = getattr(exc, "stderr", "") or str(exc)
            raise RigUnavailable(f"cannot make network namespaces: {detail.strip()}") from None
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def cut(self) -> None:
        """Take the link down (both ends lose carrier): nothing crosses between the hosts."""
        _ip("-n", self.hosts[0].name, "link", "set", self.hosts[0].link, "down")

    def restore(self) -> None:
        _ip("-n", self.hosts[0].name, "link", "set", self.hosts[0].link, "up")

    def close(self) -> None:
        for host in self.hosts:
            for proc in host.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
            for proc in host.procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for host in self.hosts:
            # anything still running inside (children of a killed process): killed by pid
            pids = _ip("netns", "pids", host.name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", host.name, check=False)
