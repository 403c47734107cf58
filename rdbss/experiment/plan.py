"""The seeded plan of a load: which operation each client runs next, on which file, with what
content. Pure functions of the load's spec and seed, so the same file gives the same sequence
of operations per client whatever the timing; the report records a digest of what each client
executed, which is a prefix of its plan.

Files: the load's file set (``{prefix}NNN.bin``) is read, stat-ed, opened, locked and listed by
every client, and each file has exactly one writer (client ``i`` writes files ``i``, ``i +
clients``, ...), so the integrity model knows the last acknowledged content of each. Scratch
files (``{prefix}tmp-c{client}-{seq}.tmp``), created, renamed and deleted by one client each,
leave the file set alone.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator, Sequence

import msgspec

from rdbss.experiment.schema import LoadSpec


class Op(msgspec.Struct, frozen=True):
    client: int
    seq: int
    kind: str  # one of schema.OP_KINDS
    file: int  # index in the file set; -1 for list and the scratch-file kinds

    def key(self) -> str:
        return f"{self.client}:{self.seq}:{self.kind}:{self.file}"


def file_name(load: LoadSpec, index: int) -> str:
    width = max(3, len(str(load.files.count - 1)))
    return f"{load.files.prefix}{index:0{width}d}.bin"


def file_path(load: LoadSpec, index: int) -> str:
    return f"{load.root}\\{file_name(load, index)}"


def scratch_path(load: LoadSpec, client: int, seq: int) -> str:
    return f"{load.root}\\{load.files.prefix}tmp-c{client}-{seq}.tmp"


def owned_files(load: LoadSpec, client: int) -> list[int]:
    """The files ``client`` writes (each file has exactly one writer)."""
    return list(range(client, load.files.count, load.clients))


def iter_plan(load: LoadSpec, client: int) -> Iterator[Op]:
    """The endless, seeded sequence of operations of one client. Pure."""
    rng = random.Random(f"rdbss-load:{load.seed}:{client}")
    kinds = [k for k, _ in load.mix]
    cumulative = []
    acc = 0.0
    for _, weight in load.mix:
        acc += weight
        cumulative.append(acc)
    mine = owned_files(load, client)
    for seq in itertools.count():
        draw = rng.random() * acc
        kind = kinds[-1]
        for k, edge in zip(kinds, cumulative, strict=True):
            if draw < edge:
                kind = k
                break
        if kind == "write":
            index = mine[rng.randrange(len(mine))]
        elif kind in ("list", "create", "rename", "delete"):
            index = -1
        else:
            index = rng.randrange(load.files.count)
        yield Op(client, seq, kind, index)


def plan_operations(load: LoadSpec, client: int, count: int) -> list[Op]:
    """The first ``count`` operations of ``client``: the same for the same spec and seed."""
    plan = iter_plan(load, client)
    return [next(plan) for _ in range(count)]


def ops_digest(ops: Sequence[Op]) -> str:
    digest = hashlib.sha256()
    for op in ops:
        digest.update(op.key().encode() + b"\n")
    return digest.hexdigest()


def write_content(load: LoadSpec, client: int, seq: int, index: int) -> bytes:
    """The unique content of one write (client -1 is the initial file set)."""
    header = (
        f"rdbss-experiment seed={load.seed} client={client} seq={seq} file={index}\n"
    ).encode()
    size = max(load.files.size, len(header))
    body = random.Random(f"rdbss-content:{load.seed}:{client}:{seq}").randbytes(size - len(header))
    return header + body


def derived_seed(seed: int, run: int) -> int:
    """The seed of repeat ``run`` (0-based) of a file whose seed is ``seed``: run 0 keeps it,
    so a single run and the first of a repeat are the same experiment."""
    if run == 0:
        return seed
    digest = hashlib.sha256(f"rdbss-repeat:{seed}:{run}".encode()).digest()
    return int.from_bytes(digest[:7], "big")
