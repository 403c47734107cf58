"""The integrity model: what each file of a load's file set must hold at the end.

Every write has unique content (seeded) and each file has one writer, so the model knows the
last acknowledged content of each file (``write_bytes`` returned: written and closed). At the end
a file must hold that content; it may also hold the content of a later write that failed (its
effect is allowed, not acknowledged: an *indeterminate* write), or a prefix of one (an overwrite
that failed half-way, which the client itself asked for). A file that is missing, or holds an
earlier acknowledged content, LOST an acknowledged write; a file holding bytes no write produced
is CORRUPTED. Pure apart from one lock (the load's clients report from several threads).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from collections.abc import Sequence

import msgspec

BAD_VERDICTS = ("LOST", "CORRUPTED", "UNREADABLE")


class FileModel(msgspec.Struct):
    acked: bytes | None = None  # the last acknowledged content
    acked_at: float | None = None  # seconds since the load started (negative: setup)
    failed: list[bytes] = []  # writes since then that did not succeed
    earlier: set[str] = set()  # sha256 of every earlier acknowledged content
    writes_acked: int = 0
    writes_failed: int = 0


class FileVerdict(msgspec.Struct, frozen=True):
    name: str
    verdict: str  # OK | UNACKED_APPLIED | TORN_BY_FAILED_WRITE | LOST | CORRUPTED | UNREADABLE
    # | UNKNOWN (never acknowledged: nothing to lose)
    acked_at: float | None
    expected_sha256: str | None
    found_sha256: str | None
    found_size: int | None

    @property
    def lost(self) -> bool:
        return self.verdict in BAD_VERDICTS


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


class IntegrityModel:
    """The last acknowledged content of each file, and what later failed writes may have left.
    Thread-safe (one lock); each file must have a single writer."""

    def __init__(self) -> None:
        self.files: dict[str, FileModel] = {}
        self._lock = threading.Lock()

    def acknowledged(self, name: str, content: bytes, when: float) -> None:
        with self._lock:
            model = self.files.setdefault(name, FileModel())
            if model.acked is not None:
                model.earlier.add(hashlib.sha256(model.acked).hexdigest())
            model.acked, model.acked_at = content, when
            model.failed.clear()
            model.writes_acked += 1

    def failed(self, name: str, content: bytes) -> None:
        with self._lock:
            model = self.files.setdefault(name, FileModel())
            model.failed.append(content)
            model.writes_failed += 1

    def verify(self, name: str, found: bytes | None, *, missing: bool = False) -> FileVerdict:
        """The verdict for ``name`` holding ``found`` (None: could not be read; ``missing``:
        the file does not exist, which no write of the load can cause)."""
        model = self.files.get(name, FileModel())
        expected = model.acked
        if missing:
            verdict = "LOST" if expected is not None else "UNKNOWN"
        elif found is None:
            verdict = "UNREADABLE" if expected is not None else "UNKNOWN"
        elif expected is not None and found == expected:
            verdict = "OK"
        elif any(found == attempt for attempt in model.failed):
            verdict = "UNACKED_APPLIED"
        elif any(attempt.startswith(found) for attempt in model.failed):
            verdict = "TORN_BY_FAILED_WRITE"
        elif expected is None:
            verdict = "UNKNOWN"
        elif _sha(found) in model.earlier:
            verdict = "LOST"  # an older acknowledged version came back
        else:
            verdict = "CORRUPTED"
        return FileVerdict(
            name, verdict, model.acked_at, _sha(expected), _sha(found), len(found) if found else 0
        )


class Integrity(msgspec.Struct):
    """One load's integrity result. ``acknowledged``: writes acknowledged during the load;
    ``indeterminate``: writes that failed (the client cannot know whether they took effect);
    ``lost`` / ``corrupted``: files (see the module docstring)."""

    load: str
    verdict: str  # OK | LOST | CORRUPTED | UNVERIFIED
    files: int
    acknowledged: int
    indeterminate: int
    lost: int
    corrupted: int
    unreadable: int
    by_verdict: dict[str, int]
    bad_files: list[FileVerdict]
    lost_after_the_last_step: list[str] = []


def integrity_summary(
    load: str, verdicts: Sequence[FileVerdict], model: IntegrityModel, initial_writes: int
) -> Integrity:
    counts = Counter(v.verdict for v in verdicts)
    if counts["LOST"]:
        verdict = "LOST"
    elif counts["CORRUPTED"]:
        verdict = "CORRUPTED"
    elif counts["UNREADABLE"]:
        verdict = "UNVERIFIED"
    else:
        verdict = "OK"
    files = model.files.values()
    return Integrity(
        load=load,
        verdict=verdict,
        files=len(verdicts),
        acknowledged=sum(m.writes_acked for m in files) - initial_writes,
        indeterminate=sum(m.writes_failed for m in files),
        lost=counts["LOST"],
        corrupted=counts["CORRUPTED"],
        unreadable=counts["UNREADABLE"],
        by_verdict=dict(sorted(counts.items())),
        bad_files=[v for v in verdicts if v.lost],
    )


def lost_after_steps(
    verdicts: Sequence[FileVerdict], step_times: Sequence[float]
) -> tuple[list[list[str]], list[str]]:
    """Attribute each lost or corrupted file to the first fault step at or after its last
    acknowledgement (the data vanished after that step); the rest went after the last step."""
    per_step: list[list[str]] = [[] for _ in step_times]
    unattributed: list[str] = []
    for v in verdicts:
        if v.verdict not in ("LOST", "CORRUPTED"):
            continue
        acked = v.acked_at if v.acked_at is not None else -math.inf
        for i, t in enumerate(step_times):
            if t >= acked:
                per_step[i].append(v.name)
                break
        else:
            unattributed.append(v.name)
    return per_step, unattributed
