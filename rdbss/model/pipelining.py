"""Rules for large transfers kept in flight: which writes and reads a mini-redirector answers
later (STATUS_PENDING) instead of waiting for the server, which of them must wait for one
another, and which SSH ciphers to offer first.

Pipelined writes (rdbss/minirdrs/sftp/minirdr.py):
- a write of at least ``PIPELINE_MIN_BYTES`` at an explicit offset goes out without waiting for
  the server's answers to the writes before it; it is answered when the server acknowledged all
  of it. Appends (offset -1, or a handle opened for appending) and small writes wait for every
  write before them, as any other request does.
- two writes in flight that overlap go to the server in the order they came (the later waits
  for the earlier): the server must end with the later one's bytes. Writes to other ranges, or
  through other handles, do not wait for one another.
- a large read is pipelined alike: it waits for every write in flight on
  the connection (a read never overtakes a write), not for other reads; a write waits for the
  reads in flight of its open that overlap its range.
- an ordering barrier: any other request on the connection (a small read or write, query,
  set-info, flush, close) starts only when every transfer in flight was answered, so it never
  overtakes one.

Ciphers: AES-GCM runs on the CPU's AES instructions (AES-NI, the ``aes`` flag of
/proc/cpuinfo) several times faster than chacha20-poly1305, which asyncssh and OpenSSH offer
first because it is the faster one without them.
"""

from __future__ import annotations

from collections.abc import Iterable

#: writes of at least this many bytes at an explicit offset are pipelined
PIPELINE_MIN_BYTES = 256 << 10

#: preferred with AES instructions (the cipher's name on the wire, as SSH negotiates it)
AES_FIRST = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


def pipelines(offset: int | None, length: int, *, append_only: bool) -> bool:
    """A write that goes out without waiting for the writes before it to be acknowledged."""
    return offset is not None and offset >= 0 and not append_only and length >= PIPELINE_MIN_BYTES


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two byte ranges (offset, length) share at least one byte."""
    (a_at, a_len), (b_at, b_len) = a, b
    return a_len > 0 and b_len > 0 and a_at < b_at + b_len and b_at < a_at + a_len


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo's text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def preferred_ciphers(flags: Iterable[str]) -> tuple[str, ...] | None:
    """The SSH ciphers to offer, in order, for a CPU with these feature flags; None: the SSH
    library's own default order."""
    return AES_FIRST if "aes" in set(flags) else None
