r"""Reproducible fault-injection experiments: ``rdbss experiment run FILE [--out DIR]``.

The runner starts its own daemon (a private runtime directory under /tmp) from the setup the
file names, drives a seeded load through ``rdbss.client.Client`` from several threads, carries out
a timed fault schedule (fault rules of ``faulty`` mini-redirectors, SIGKILL/SIGSTOP/SIGCONT of a
mini-redirector process, settings of a ``FaultProxy``), then clears every fault, reads every
file back through the daemon and checks that no acknowledged write was lost. It always stops
the daemon (by its pid) and the proxies at the end.

Also ``python -m rdbss.experiment run FILE [--out DIR]`` and, to see the planned operations
without running anything, ``python -m rdbss.experiment plan FILE [--client N] [--count N]``.
Exit status: 0 when nothing acknowledged was lost, 1 when something was (or a run failed), 2 for
a bad experiment file. An example: ``deploy/experiments/kill-local.toml``.

Experiment file (TOML)::

    [experiment]
    name = "kill-local"

    [setup]                            # the daemon: inline tables, or config = "path.toml"
    [setup.daemon]                     # (relative to this file); runtime_dir is always private
    request_timeout = 5.0              # defaults: request/connect timeout 5 s
    [[setup.minirdr]]
    name = "flaky"
    kind = "faulty"
    wraps = "local"
    seed = 1
    [setup.minirdr.options]
    server = "flaky"
    [setup.minirdr.options.shares]
    data = "{tmp}/flaky"               # {tmp}: the run's private folder (removed at the end)

    [[setup.proxy]]                    # optional FaultProxy (rdbss.faultproxy), started first;
    name = "smb"                       # "{proxy.smb.port}" / "{proxy.smb.host}" in the setup
    target = "127.0.0.1:445"           # are its listening address
    seed = 1

    [load]
    root = '\\flaky\data\exp'          # folder of the file set (created)
    clients = 2                        # threads, each with its own Client
    rate = 200                         # ops/s of all clients together; 0 = as fast as possible
    duration_s = 8
    seed = 42                          # the load's own RNG
    timeout_s = 5.0                    # each request's deadline
    mix = { stat = 0.3, read = 0.5, write = 0.2 }      # kinds: stat, read, write, list
    [load.files]
    count = 16
    size = 4096

    [[fault]]                          # steps, at t seconds after the load started
    t = 2.0
    action = "set_faults"              # set_faults | clear_faults | kill | stop | cont | proxy
    minirdr = "flaky"
    seed = 3
    [[fault.rules]]                    # rules as in rdbss/minirdrs/faults.py
    routine = "MRxLowIOSubmit"
    lowio_op = "READ"
    action = "status"
    status = "STATUS_UNEXPECTED_NETWORK_ERROR"
    [[fault]]
    t = 3.5
    action = "clear_faults"
    minirdr = "flaky"
    [[fault]]
    t = 5.0
    action = "kill"                    # SIGKILL; "stop" = SIGSTOP, "cont" = SIGCONT
    minirdr = "flaky"
    # [[fault]] t = 6, action = "proxy", proxy = "smb", settings = { latency_ms = 200 }

Output in ``--out``: ``report.json`` (config echo, per-second time series of throughput and
latency percentiles, errors by NTSTATUS name, per fault step: time, what, recovery time and the
acknowledged writes lost after it; the integrity verdict), ``throughput.png``, ``latency.png``,
``errors.png``, ``summary.txt`` and a copy of the daemon's log.

Recovery time of a step: from the step to the start of the first full second at or after it
whose throughput (successful ops) is >= 80 % of the pre-fault average and which has no errors;
the pre-fault average is the mean of the error-free seconds before the step that are not inside
an earlier step's disturbance. ``None`` when the run ends first.

Integrity: every write has unique content (seeded); each file is written by one client only, so
the model knows the last acknowledged content of each file (write_bytes returned: written and
closed). At the end every file must hold that content; it may also hold the content of a later
write that failed (its effect is allowed, not acknowledged), or a prefix of it (an overwrite that
failed half-way, which the client itself asked for). Anything else is LOST.

Reproducibility: the same file and seeds give the same sequence of operations for each client
(``plan_operations``, a pure function; the report records a digest of what each client executed,
which is a prefix of its plan) and the same decisions of a faulty mini-redirector for the same
sequence of calls (its seed, and the seed of each set_faults step). What still varies is timing:
how many operations fit in the duration, latencies, how the clients interleave (so which calls a
probabilistic or every-n rule sees when several clients share a faulty mini-redirector), where in
the sequence a timed step lands, how long a restart takes, and the jitter draws of a FaultProxy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rdbss.client import Client
from rdbss.config import ConfigError, parse_config
from rdbss.faultproxy import FaultProxy, ProxySettings, apply_settings, parse_address
from rdbss.wire.status import NtStatusError

OP_KINDS = ("stat", "read", "write", "list")
FAULT_ACTIONS = ("set_faults", "clear_faults", "kill", "stop", "cont", "proxy")
RECOVERY_FRACTION = 0.8
FAULT_CLIENT_TIMEOUT_S = 5.0
SETUP_DEADLINE_S = 30.0  # creating the file set
VERIFY_DEADLINE_S = 40.0  # clearing faults and reading every file back
DAEMON_STOP_TIMEOUT_S = 20.0
JOIN_GRACE_S = 15.0  # past duration + request timeout, how long a load thread may take


class ExperimentError(ConfigError):
    """The experiment file is missing something or says something impossible."""


# ====================================================================================== spec
@dataclass(frozen=True, slots=True)
class FileSet:
    count: int = 16
    size: int = 4096
    prefix: str = "exp-"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    root: str
    mix: tuple[tuple[str, float], ...] = (("stat", 0.3), ("read", 0.5), ("write", 0.2))
    files: FileSet = FileSet()
    rate: float = 0.0
    duration_s: float = 10.0
    clients: int = 1
    seed: int = 0
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class FaultStep:
    index: int
    t: float
    action: str
    target: str  # a mini-redirector (or peer) name, or a proxy name
    rules: tuple[Mapping[str, Any], ...] = ()
    seed: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.action == "set_faults":
            rules = "; ".join(_describe_rule(r) for r in self.rules) or "no rules"
            seed = f", seed {self.seed}" if self.seed is not None else ""
            return f"set faults on {self.target}: {rules}{seed}"
        if self.action == "clear_faults":
            return f"clear faults on {self.target}"
        if self.action == "kill":
            return f"SIGKILL {self.target}"
        if self.action == "stop":
            return f"SIGSTOP {self.target}"
        if self.action == "cont":
            return f"SIGCONT {self.target}"
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"proxy {self.target}: {settings}"


def _describe_rule(rule: Mapping[str, Any]) -> str:
    what = str(rule.get("routine", "*"))
    if "lowio_op" in rule:
        what += f" {rule['lowio_op']}"
    if "path" in rule:
        what += f" {rule['path']}"
    action = str(rule.get("action"))
    if action == "status":
        action = str(rule.get("status"))
    extra = [f"{k}={rule[k]}" for k in ("probability", "every", "count", "delay_ms") if k in rule]
    return f"{what} -> {action}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True, slots=True)
class ProxySpec:
    name: str
    target: tuple[str, int]
    listen_port: int = 0
    seed: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    source: Path | None
    raw: Mapping[str, Any]  # the file as parsed (echoed into the report)
    config: Mapping[str, Any]  # the daemon configuration tables (before placeholders)
    proxies: tuple[ProxySpec, ...]
    load: LoadSpec
    faults: tuple[FaultStep, ...]


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ExperimentError(f"{where}: [{key}] must be a table")
    return value


def _num(
    data: Mapping[str, Any], key: str, default: float, where: str, *, minimum: float = 0.0
) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ExperimentError(f"{where}.{key} must be a number >= {minimum}, not {value!r}")
    if math.isinf(value) or math.isnan(value):
        raise ExperimentError(f"{where}.{key} must be finite")
    return float(value)


def _int(data: Mapping[str, Any], key: str, default: int, where: str, *, minimum: int = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExperimentError(f"{where}.{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = set(data) - known
    if extra:
        raise ExperimentError(f"{where}: unknown key {sorted(extra)[0]!r}")


def parse_load(data: Mapping[str, Any], where: str = "load") -> LoadSpec:
    _unknown(
        data,
        {"root", "mix", "files", "rate", "duration_s", "clients", "seed", "timeout_s"},
        where,
    )
    root = data.get("root")
    if not isinstance(root, str) or not root.replace("/", "\\").startswith("\\\\"):
        raise ExperimentError(rf"{where}.root must be a UNC folder (\\server\share[\dir])")
    mix_raw = data.get("mix", {"stat": 0.3, "read": 0.5, "write": 0.2})
    if not isinstance(mix_raw, dict) or not mix_raw:
        raise ExperimentError(f"{where}.mix must be a table of operation weights")
    mix: list[tuple[str, float]] = []
    for kind in sorted(mix_raw):
        if kind not in OP_KINDS:
            raise ExperimentError(f"{where}.mix: unknown operation {kind!r}; known: {OP_KINDS}")
        weight = _num(mix_raw, kind, 0.0, f"{where}.mix")
        if weight > 0:
            mix.append((kind, weight))
    total = sum(w for _, w in mix)
    if total <= 0:
        raise ExperimentError(f"{where}.mix: the weights add up to 0")
    files_raw = _table(data, "files", where)
    _unknown(files_raw, {"count", "size", "prefix"}, f"{where}.files")
    prefix = files_raw.get("prefix", "exp-")
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in '\\/:*?"<>|'):
        raise ExperimentError(f"{where}.files.prefix must be a plain file-name prefix")
    files = FileSet(
        count=_int(files_raw, "count", 16, f"{where}.files", minimum=1),
        size=_int(files_raw, "size", 4096, f"{where}.files", minimum=1),
        prefix=prefix,
    )
    clients = _int(data, "clients", 1, where, minimum=1)
    if clients > 64:
        raise ExperimentError(f"{where}.clients: at most 64")
    if files.size > 64 << 20:
        raise ExperimentError(f"{where}.files.size: at most 64 MiB")
    if any(k == "write" for k, _ in mix) and files.count < clients:
        raise ExperimentError(
            f"{where}: writes need at least one file per client (each file has one writer)"
        )
    return LoadSpec(
        root=root.replace("/", "\\").rstrip("\\"),
        mix=tuple((k, w / total) for k, w in mix),
        files=files,
        rate=_num(data, "rate", 0.0, where),
        duration_s=_num(data, "duration_s", 10.0, where, minimum=0.1),
        clients=clients,
        seed=_int(data, "seed", 0, where, minimum=-(2**63)),
        timeout_s=_num(data, "timeout_s", 5.0, where, minimum=0.1),
    )


def parse_fault(index: int, data: Any, proxies: set[str]) -> FaultStep:
    where = f"fault #{index + 1}"
    if not isinstance(data, dict):
        raise ExperimentError(f"{where} must be a table")
    _unknown(data, {"t", "action", "minirdr", "proxy", "rules", "seed", "settings"}, where)
    action = data.get("action")
    if action not in FAULT_ACTIONS:
        raise ExperimentError(f"{where}: action must be one of {FAULT_ACTIONS}, not {action!r}")
    t = _num(data, "t", -1.0, where, minimum=0.0)
    if action == "proxy":
        target = data.get("proxy")
        if target not in proxies:
            raise ExperimentError(f"{where}: proxy must name a [[setup.proxy]], not {target!r}")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise ExperimentError(f"{where}: settings must be a table")
        changes = {k: v for k, v in settings.items() if k not in ("reset", "seed")}
        try:
            apply_settings(ProxySettings(), changes)
        except ValueError as exc:
            raise ExperimentError(f"{where}: {exc}") from None
        return FaultStep(index, t, action, str(target), settings=dict(settings))
    target = data.get("minirdr")
    if not isinstance(target, str) or not target:
        raise ExperimentError(f"{where}: needs minirdr = <name>")
    rules: tuple[Mapping[str, Any], ...] = ()
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ExperimentError(f"{where}: seed must be an integer")
    if action == "set_faults":
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise ExperimentError(f"{where}: set_faults needs rules (a list of tables)")
        from rdbss.minirdrs.faults import FaultError, parse_rules

        try:
            parse_rules(raw_rules)
        except FaultError as exc:
            raise ExperimentError(f"{where}: {exc}") from None
        rules = tuple(raw_rules)
    return FaultStep(index, t, action, target, rules=rules, seed=seed)


def parse_experiment(
    data: Mapping[str, Any], source: Path | None = None, base_dir: Path | None = None
) -> Experiment:
    """A parsed experiment file -> Experiment; raises ExperimentError."""
    where = str(source) if source else "experiment"
    _unknown(data, {"experiment", "setup", "load", "fault"}, where)
    meta = _table(data, "experiment", where)
    name = meta.get("name", source.stem if source else "experiment")
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"{where}: experiment.name must be a string")
    setup = _table(data, "setup", where)
    _unknown(setup, {"config", "daemon", "minirdr", "proxy"}, f"{where}: setup")
    if "config" in setup:
        if "daemon" in setup or "minirdr" in setup:
            raise ExperimentError(f"{where}: setup has config = PATH or inline tables, not both")
        path = Path(str(setup["config"])).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        try:
            config: dict[str, Any] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ExperimentError(f"{where}: setup.config {path}: {exc}") from None
    else:
        config = {k: setup[k] for k in ("daemon", "minirdr") if k in setup}
    if not config.get("minirdr"):
        raise ExperimentError(f"{where}: the setup needs at least one [[setup.minirdr]]")
    proxies: list[ProxySpec] = []
    for i, raw in enumerate(setup.get("proxy", [])):
        pw = f"{where}: setup.proxy #{i + 1}"
        if not isinstance(raw, dict):
            raise ExperimentError(f"{pw} must be a table")
        _unknown(raw, {"name", "target", "listen_port", "seed", "settings"}, pw)
        pname = raw.get("name")
        if not isinstance(pname, str) or not pname.isidentifier():
            raise ExperimentError(f"{pw}: needs a name (letters, digits, _)")
        try:
            target = parse_address(str(raw.get("target", "")))
            settings = raw.get("settings", {})
            apply_settings(ProxySettings(), settings)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ExperimentError(f"{pw}: {exc}") from None
        proxies.append(
            ProxySpec(
                pname,
                target,
                _int(raw, "listen_port", 0, pw),
                _int(raw, "seed", 0, pw),
                dict(settings),
            )
        )
    if len({p.name for p in proxies}) != len(proxies):
        raise ExperimentError(f"{where}: two proxies have the same name")
    load = parse_load(_table(data, "load", where), f"{where}: load")
    raw_faults = data.get("fault", [])
    if not isinstance(raw_faults, list):
        raise ExperimentError(f"{where}: fault must be an array of tables ([[fault]])")
    faults = [parse_fault(i, f, {p.name for p in proxies}) for i, f in enumerate(raw_faults)]
    faults.sort(key=lambda s: (s.t, s.index))
    return Experiment(name, source, data, config, tuple(proxies), load, tuple(faults))


def load_experiment(path: Path) -> Experiment:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ExperimentError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    return parse_experiment(data, path, path.parent)


# ========================================================================= pure: the plan
@dataclass(frozen=True, slots=True)
class Op:
    client: int
    seq: int
    kind: str  # stat | read | write | list
    file: int  # index in the file set; -1 for list

    def key(self) -> str:
        return f"{self.client}:{self.seq}:{self.kind}:{self.file}"


def file_name(load: LoadSpec, index: int) -> str:
    width = max(3, len(str(load.files.count - 1)))
    return f"{load.files.prefix}{index:0{width}d}.bin"


def file_path(load: LoadSpec, index: int) -> str:
    return f"{load.root}\\{file_name(load, index)}"


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
        elif kind == "list":
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


# ================================================================== pure: the time series
@dataclass(frozen=True, slots=True)
class OpRecord:
    client: int
    seq: int
    kind: str
    file: int
    start: float  # seconds since the load started
    end: float
    status: str | None  # None: success; else the NTSTATUS name (or the exception type)

    @property
    def ok(self) -> bool:
        return self.status is None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def time_series(records: Sequence[OpRecord], duration_s: float) -> list[dict[str, Any]]:
    """One entry per second (by completion time): ops, ok, errors, throughput (ok ops/s),
    latency percentiles (ms, all completed ops) and errors by status. ``full`` marks seconds
    that lie entirely inside the load's duration."""
    last = max([duration_s, *(r.end for r in records)]) if records else duration_s
    seconds = max(1, math.ceil(last))
    buckets: list[list[OpRecord]] = [[] for _ in range(seconds)]
    for record in records:
        buckets[min(seconds - 1, max(0, int(record.end)))].append(record)
    series = []
    for second, bucket in enumerate(buckets):
        latencies = sorted((r.end - r.start) * 1000.0 for r in bucket)
        ok = sum(1 for r in bucket if r.ok)
        errors = Counter(r.status for r in bucket if r.status is not None)
        series.append(
            {
                "t": second,
                "full": second + 1 <= duration_s + 1e-9,
                "ops": len(bucket),
                "ok": ok,
                "errors": sum(errors.values()),
                "throughput": float(ok),
                "p50_ms": _round(percentile(latencies, 50)),
                "p90_ms": _round(percentile(latencies, 90)),
                "p99_ms": _round(percentile(latencies, 99)),
                "max_ms": _round(latencies[-1] if latencies else math.nan),
                "errors_by_status": dict(sorted(errors.items())),
            }
        )
    return series


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


@dataclass(frozen=True, slots=True)
class Recovery:
    baseline: float | None  # pre-fault average throughput (ops/s)
    recovered_second: int | None  # the first good second
    recovery_s: float | None  # from the fault to the start of that second (0 if it is the
    # fault's own second)


def recovery_times(
    series: Sequence[Mapping[str, Any]],
    fault_times: Sequence[float],
    fraction: float = RECOVERY_FRACTION,
) -> list[Recovery]:
    """For each fault (in time order) the recovery: see the module docstring. Pure."""
    full = [s for s in series if s.get("full", True)]
    disturbed: set[int] = set()
    results = []
    for t_fault in fault_times:
        fault_second = int(t_fault)
        clean = [
            s["throughput"]
            for s in full
            if s["t"] + 1 <= t_fault + 1e-9 and s["errors"] == 0 and s["t"] not in disturbed
        ]
        baseline = sum(clean) / len(clean) if clean else None
        threshold = fraction * baseline if baseline is not None else 0.0
        recovered: int | None = None
        for s in full:
            if s["t"] < fault_second:
                continue
            good = s["errors"] == 0 and s["throughput"] >= threshold and s["throughput"] > 0
            if good:
                recovered = int(s["t"])
                break
        if recovered is None:
            disturbed.update(s["t"] for s in full if s["t"] >= fault_second)
            results.append(Recovery(baseline, None, None))
            continue
        disturbed.update(range(fault_second, recovered))
        recovery = max(0.0, recovered - t_fault)
        results.append(Recovery(baseline, recovered, round(recovery, 3)))
    return results


# =================================================================== pure: integrity model
@dataclass(slots=True)
class FileModel:
    acked: bytes | None = None  # the last acknowledged content
    acked_at: float | None = None  # seconds since the load started (negative: setup)
    failed: list[bytes] = field(default_factory=list)  # writes since then that did not succeed
    writes_acked: int = 0


@dataclass(frozen=True, slots=True)
class FileVerdict:
    name: str
    verdict: str  # OK | UNACKED_APPLIED | TORN_BY_FAILED_WRITE | LOST | UNREADABLE | UNKNOWN
    acked_at: float | None
    expected_sha256: str | None
    found_sha256: str | None
    found_size: int | None

    @property
    def lost(self) -> bool:
        return self.verdict in ("LOST", "UNREADABLE")


class IntegrityModel:
    """The last acknowledged content of each file, and what later failed writes may have left.
    Thread-safe (one lock); each file must have a single writer."""

    def __init__(self) -> None:
        self.files: dict[str, FileModel] = {}
        self._lock = threading.Lock()

    def acknowledged(self, name: str, content: bytes, when: float) -> None:
        with self._lock:
            model = self.files.setdefault(name, FileModel())
            model.acked, model.acked_at = content, when
            model.failed.clear()
            model.writes_acked += 1

    def failed(self, name: str, content: bytes) -> None:
        with self._lock:
            self.files.setdefault(name, FileModel()).failed.append(content)

    def verify(self, name: str, found: bytes | None, *, missing: bool = False) -> FileVerdict:
        """The verdict for ``name`` holding ``found`` (None: could not be read; ``missing``:
        the file does not exist, which no write of the load can cause)."""
        model = self.files.get(name, FileModel())
        expected = model.acked

        def sha(data: bytes | None) -> str | None:
            return hashlib.sha256(data).hexdigest() if data is not None else None

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
            verdict = "UNKNOWN"  # never acknowledged: nothing to lose
        else:
            verdict = "LOST"
        return FileVerdict(
            name, verdict, model.acked_at, sha(expected), sha(found), len(found) if found else 0
        )


def integrity_summary(verdicts: Sequence[FileVerdict]) -> dict[str, Any]:
    counts = Counter(v.verdict for v in verdicts)
    lost = [v for v in verdicts if v.verdict == "LOST"]
    unreadable = [v for v in verdicts if v.verdict == "UNREADABLE"]
    if lost:
        verdict = "LOST"
    elif unreadable:
        verdict = "UNVERIFIED"
    else:
        verdict = "OK"
    return {
        "verdict": verdict,
        "files": len(verdicts),
        "by_verdict": dict(sorted(counts.items())),
        "lost": [asdict(v) for v in lost],
        "unreadable": [asdict(v) for v in unreadable],
    }


def lost_after_steps(
    verdicts: Sequence[FileVerdict], step_times: Sequence[float]
) -> tuple[list[list[str]], list[str]]:
    """Attribute each lost file to the first fault step at or after its last acknowledgement
    (the data vanished after that step); the rest were lost after the last step."""
    per_step: list[list[str]] = [[] for _ in step_times]
    unattributed: list[str] = []
    for v in verdicts:
        if v.verdict != "LOST":
            continue
        acked = v.acked_at if v.acked_at is not None else -math.inf
        for i, t in enumerate(step_times):
            if t >= acked:
                per_step[i].append(v.name)
                break
        else:
            unattributed.append(v.name)
    return per_step, unattributed


# ============================================================ daemon configuration (TOML)
def substitute(value: Any, replacements: Mapping[str, Any]) -> Any:
    """Replace placeholders in every string; a string that is exactly one placeholder takes
    the replacement's own type (a port stays an integer)."""
    if isinstance(value, str):
        if value in replacements:
            return replacements[value]
        for key, repl in replacements.items():
            value = value.replace(key, str(repl))
        return value
    if isinstance(value, list):
        return [substitute(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, replacements) for k, v in value.items()}
    return value


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ExperimentError(f"cannot write {value!r} into a TOML configuration")


def config_toml(config: Mapping[str, Any]) -> str:
    """A daemon configuration ({daemon: {...}, minirdr: [...]}) as TOML text."""
    lines = ["[daemon]"]
    for key, value in config.get("daemon", {}).items():
        lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for entry in config.get("minirdr", []):
        lines += ["", "[[minirdr]]"]
        for key, value in entry.items():
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def daemon_config(
    experiment: Experiment, base: Path, proxies: Mapping[str, FaultProxy]
) -> dict[str, Any]:
    """The experiment's daemon configuration for a run in ``base``: placeholders replaced,
    a private runtime directory, short default timeouts."""
    replacements: dict[str, Any] = {"{tmp}": str(base)}
    for name, proxy in proxies.items():
        replacements[f"{{proxy.{name}.port}}"] = proxy.port
        replacements[f"{{proxy.{name}.host}}"] = proxy.host
    config = substitute(copy.deepcopy(dict(experiment.config)), replacements)
    daemon = config.setdefault("daemon", {})
    if not isinstance(daemon, dict):
        raise ExperimentError("setup: [daemon] must be a table")
    daemon["runtime_dir"] = str(base / "run")
    daemon.setdefault("request_timeout", 5.0)
    daemon.setdefault("connect_timeout", 5.0)
    daemon.setdefault("log_level", "info")
    return dict(config)


def _share_folders(options: Mapping[str, Any]) -> Iterator[str]:
    shares = options.get("shares")
    if isinstance(shares, Mapping):
        yield from (str(v) for v in shares.values())
    inner = options.get("options")
    if isinstance(inner, Mapping):
        yield from _share_folders(inner)


# =============================================================================== the run
@dataclass
class StepResult:
    step: FaultStep
    at: float | None = None  # seconds since the load started; None: not run
    ok: bool = False
    detail: str = ""


def _proc_identity(pid: int) -> tuple[int, int] | None:
    """(process group, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[2]), int(fields[19])


class Runner:
    """One run of an experiment: ``Runner(experiment, out).run()`` -> the report."""

    def __init__(self, experiment: Experiment, out: Path, log: Callable[[str], None] = print):
        self.experiment = experiment
        self.load = experiment.load
        self.out = out
        self.log = log
        self.base: Path | None = None
        self.daemon_pid: int | None = None
        self.runtime_dir: Path | None = None
        self.proxies: dict[str, FaultProxy] = {}
        self.model = IntegrityModel()
        self.stop_event = threading.Event()
        self.t0 = 0.0
        self.records: list[list[OpRecord]] = [[] for _ in range(self.load.clients)]
        self.worker_errors: list[str] = []
        self.steps: list[StepResult] = [StepResult(s) for s in experiment.faults]
        self.stopped: dict[str, tuple[int, tuple[int, int]]] = {}  # name -> pid, identity
        self.config_text = ""

    # ------------------------------------------------------------------ set-up and tear-down
    def _start(self) -> None:
        from rdbss.actors.supervisor import start_detached
        from rdbss.config import load_config

        self.base = Path(tempfile.mkdtemp(prefix="rdx-", dir="/tmp"))  # ipc paths are short
        for spec in self.experiment.proxies:
            proxy = FaultProxy(
                *spec.target, port=spec.listen_port, seed=spec.seed, **dict(spec.settings)
            )
            self.proxies[spec.name] = proxy.start()
        config = daemon_config(self.experiment, self.base, self.proxies)
        self.config_text = config_toml(config)
        parse_config(self.config_text)  # validates before anything starts
        for entry in config.get("minirdr", []):
            for folder in _share_folders(entry):
                path = Path(folder).expanduser()
                if path.is_relative_to(self.base):
                    path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.base / "rdbss.toml"
        cfg_path.write_text(self.config_text)
        loaded = load_config(cfg_path)
        self.runtime_dir = loaded.runtime_dir
        self.daemon_pid = start_detached(cfg_path, loaded)

    def _stop(self) -> None:
        from rdbss.actors.supervisor import read_pid, stop_daemon

        for name in list(self.stopped):
            self._cont(name)
        if self.runtime_dir is not None and self.daemon_pid is not None:
            pid = self.daemon_pid
            try:
                stop_daemon(self.runtime_dir, timeout=DAEMON_STOP_TIMEOUT_S)
            except (TimeoutError, OSError) as exc:
                self.log(f"experiment: the daemon did not stop ({exc}); killing it")
            # the daemon runs in its own session: whatever of that group is left goes
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            deadline = time.monotonic() + 5.0
            while read_pid(self.runtime_dir) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            log_path = self.runtime_dir / "daemon.log"
            if log_path.exists():
                with contextlib.suppress(OSError):
                    shutil.copyfile(log_path, self.out / "daemon.log")
        for proxy in self.proxies.values():
            try:
                proxy.stop()
            except TimeoutError as exc:
                self.log(f"experiment: {exc}")
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def _client(self, timeout: float) -> Client:
        assert self.runtime_dir is not None
        return Client(self.runtime_dir, timeout=timeout)

    def _retry(
        self,
        what: str,
        func: Callable[[], Any],
        deadline: float,
        final: tuple[type[BaseException], ...] = (),
    ) -> Any:
        """``func()``, tried again on failure every 0.2 s until ``deadline`` (at least once);
        exceptions in ``final`` are not retried."""
        while True:
            try:
                return func()
            except final:
                raise
            except (NtStatusError, OSError) as exc:
                if time.monotonic() + 0.2 >= deadline:
                    raise RuntimeError(f"{what}: still failing at the deadline: {exc}") from exc
                time.sleep(0.2)

    def _create_file_set(self) -> None:
        load = self.load
        deadline = time.monotonic() + SETUP_DEADLINE_S
        with self._client(load.timeout_s) as c:

            def make_root() -> None:
                if not c.exists(load.root):
                    c.mkdir(load.root, parents=True, exist_ok=True)

            self._retry(f"creating {load.root}", make_root, deadline)
            for index in range(load.files.count):
                content = write_content(load, -1, index, index)
                path = file_path(load, index)
                self._retry(
                    f"writing {path}", functools.partial(c.write_bytes, path, content), deadline
                )
                self.model.acknowledged(file_name(load, index), content, -1.0)

    # ------------------------------------------------------------------ the load
    def _worker(self, client_index: int) -> None:
        try:
            with self._client(self.load.timeout_s) as client:
                self._load_loop(client, client_index)
        except Exception as exc:  # recorded in the report; the other clients go on
            self.worker_errors.append(f"client {client_index}: {type(exc).__name__}: {exc}")

    def _load_loop(self, client: Client, client_index: int) -> None:
        """Run the client's planned operations until the end of the load, paced to the rate
        (closed loop: a stalled operation delays the next; no bursts to catch up)."""
        load = self.load
        records = self.records[client_index]
        end = self.t0 + load.duration_s
        interval = load.clients / load.rate if load.rate > 0 else 0.0
        next_at = self.t0
        for op in iter_plan(load, client_index):
            now = time.monotonic()
            if interval:
                if next_at > now and (
                    self.stop_event.wait(min(next_at, end) - now) or next_at >= end
                ):
                    break
                next_at = max(next_at + interval, time.monotonic() - interval)
            if time.monotonic() >= end or self.stop_event.is_set():
                break
            records.append(self._execute(client, op))

    def _execute(self, client: Client, op: Op) -> OpRecord:
        load = self.load
        started = time.monotonic()
        status: str | None = None
        content = b""
        name = file_name(load, op.file) if op.file >= 0 else ""
        try:
            if op.kind == "stat":
                client.stat(file_path(load, op.file))
            elif op.kind == "read":
                client.read_bytes(file_path(load, op.file))
            elif op.kind == "list":
                client.listdir(load.root, f"{load.files.prefix}*")
            else:
                content = write_content(load, op.client, op.seq, op.file)
                client.write_bytes(file_path(load, op.file), content)
        except NtStatusError as exc:
            status = exc.status_name
        except Exception as exc:  # recorded, by type: the load goes on
            status = type(exc).__name__
        ended = time.monotonic()
        if op.kind == "write":
            if status is None:
                self.model.acknowledged(name, content, ended - self.t0)
            else:
                self.model.failed(name, content)
        return OpRecord(
            op.client, op.seq, op.kind, op.file, started - self.t0, ended - self.t0, status
        )

    # ------------------------------------------------------------------ the fault schedule
    def _faults(self) -> None:
        end = self.t0 + self.load.duration_s
        client = None
        try:
            client = self._client(FAULT_CLIENT_TIMEOUT_S)
            for result in self.steps:
                step = result.step
                when = self.t0 + step.t
                if when >= end:
                    result.detail = "not run: after the end of the load"
                    continue
                if self.stop_event.wait(max(0.0, when - time.monotonic())):
                    result.detail = "not run: the experiment was stopped"
                    continue
                result.at = round(time.monotonic() - self.t0, 3)
                try:
                    result.detail = self._carry_out(client, step)
                    result.ok = True
                except Exception as exc:  # recorded in the report: the schedule goes on
                    result.detail = f"failed: {type(exc).__name__}: {exc}"
                self.log(f"  t={result.at:6.2f}s  {step.describe()}: {result.detail}")
        except (NtStatusError, OSError) as exc:
            self.worker_errors.append(f"fault schedule: {exc}")
        finally:
            if client is not None:
                client.close()

    def _peer_pid(self, client: Client, name: str) -> int:
        for peer in client.status()["peers"]:
            if peer.get("name") == name and peer.get("pid"):
                pid = int(peer["pid"])
                identity = _proc_identity(pid)
                # only a process of this daemon (its own session and group)
                if identity is None or identity[0] != self.daemon_pid:
                    raise LookupError(f"{name} (pid {pid}) is not a process of this daemon")
                return pid
        raise LookupError(f"no running process named {name!r} in the daemon's status")

    def _carry_out(self, client: Client, step: FaultStep) -> str:
        if step.action == "set_faults":
            result = client.set_faults(step.target, [dict(r) for r in step.rules], step.seed)
            return f"accepted: {len(result['rules'])} rule(s), seed {result['seed']}"
        if step.action == "clear_faults":
            client.set_faults(step.target, [], step.seed)
            return "rules cleared"
        if step.action == "proxy":
            settings = dict(step.settings)
            self.proxies[step.target].set(**settings)
            return "proxy settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())
        if step.action == "cont":
            return self._cont(step.target)
        pid = self._peer_pid(client, step.target)
        if step.action == "kill":
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL pid {pid}"
        identity = _proc_identity(pid)
        os.kill(pid, signal.SIGSTOP)
        if identity is not None:
            self.stopped[step.target] = (pid, identity)
        return f"SIGSTOP pid {pid}"

    def _cont(self, name: str) -> str:
        entry = self.stopped.pop(name, None)
        if entry is None:
            return "nothing stopped by this experiment"
        pid, identity = entry
        if _proc_identity(pid) != identity:
            return f"pid {pid} is gone (the supervisor replaced it)"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        return f"SIGCONT pid {pid}"

    # ------------------------------------------------------------------ verification
    def _clear_and_verify(self) -> tuple[list[FileVerdict], dict[str, Any]]:
        load = self.load
        deadline = time.monotonic() + VERIFY_DEADLINE_S
        for name in list(self.stopped):
            self._cont(name)
        for proxy in self.proxies.values():
            proxy.clear()
        faulty_state: dict[str, Any] = {}
        verdicts = []
        with self._client(load.timeout_s) as c:
            for entry in self.experiment.config.get("minirdr", []):
                if entry.get("kind") != "faulty":
                    continue
                name = str(entry.get("name"))
                with contextlib.suppress(NtStatusError, OSError):
                    faulty_state[name] = c.faults(name)
                try:
                    self._retry(
                        f"clearing the faults of {name}",
                        functools.partial(c.set_faults, name, []),
                        time.monotonic() + VERIFY_DEADLINE_S / 4,
                    )
                except RuntimeError as exc:  # recorded; reading back still tells what it can
                    self.worker_errors.append(str(exc))
            for index in range(load.files.count):
                name = file_name(load, index)
                path = file_path(load, index)
                try:  # at least one attempt per file, even past the deadline
                    found = self._retry(
                        f"reading {path}",
                        functools.partial(c.read_bytes, path),
                        deadline,
                        final=(FileNotFoundError,),
                    )
                except FileNotFoundError:
                    verdicts.append(self.model.verify(name, None, missing=True))
                    continue
                except RuntimeError as exc:
                    self.worker_errors.append(str(exc))
                    found = None
                verdicts.append(self.model.verify(name, found))
        return verdicts, faulty_state

    # ------------------------------------------------------------------ the whole run
    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        load = self.load
        try:
            self.log(f"experiment {self.experiment.name}: starting the daemon")
            self._start()
            self._create_file_set()
            self.log(
                f"experiment {self.experiment.name}: load for {load.duration_s:g} s, "
                f"{load.clients} client(s), {len(self.steps)} fault step(s)"
            )
            self.t0 = time.monotonic()
            threads = [
                threading.Thread(target=self._worker, args=(i,), name=f"load-{i}")
                for i in range(load.clients)
            ]
            threads.append(threading.Thread(target=self._faults, name="faults"))
            for thread in threads:
                thread.start()
            deadline = self.t0 + load.duration_s + load.timeout_s + JOIN_GRACE_S
            try:
                for thread in threads:
                    thread.join(max(0.0, deadline - time.monotonic()))
            finally:
                self.stop_event.set()
                for thread in threads:
                    thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:
                self.worker_errors.append(f"threads still running at the deadline: {stuck}")
            elapsed = time.monotonic() - self.t0
            self.log(f"experiment {self.experiment.name}: verifying every file")
            verdicts, faulty_state = self._clear_and_verify()
        finally:
            self._stop()
        report = self._report(started_at, elapsed, verdicts, faulty_state)
        write_outputs(report, self.out)
        return report

    def _report(
        self,
        started_at: str,
        elapsed: float,
        verdicts: list[FileVerdict],
        faulty_state: dict[str, Any],
    ) -> dict[str, Any]:
        load = self.load
        records = sorted((r for rs in self.records for r in rs), key=lambda r: r.end)
        series = time_series(records, load.duration_s)
        ran = [s for s in self.steps if s.at is not None]
        recoveries = recovery_times(series, [s.at for s in ran if s.at is not None])
        by_step = dict(zip((id(s) for s in ran), recoveries, strict=True))
        lost_per_step, lost_later = lost_after_steps(verdicts, [s.at or 0.0 for s in ran])
        lost_by_step = dict(zip((id(s) for s in ran), lost_per_step, strict=True))
        errors = Counter(r.status for r in records if r.status is not None)
        steps = []
        for result in self.steps:
            recovery = by_step.get(id(result))
            lost = lost_by_step.get(id(result), [])
            steps.append(
                {
                    "index": result.step.index,
                    "t": result.step.t,
                    "at": result.at,
                    "action": result.step.action,
                    "target": result.step.target,
                    "what": result.step.describe(),
                    "ok": result.ok,
                    "detail": result.detail,
                    "baseline_ops_s": _round(recovery.baseline)
                    if recovery and recovery.baseline is not None
                    else None,
                    "recovery_s": recovery.recovery_s if recovery else None,
                    "recovered_second": recovery.recovered_second if recovery else None,
                    "integrity": "LOST" if lost else "OK",
                    "lost_files": lost,
                }
            )
        clients = []
        for i, rs in enumerate(self.records):
            executed = [Op(r.client, r.seq, r.kind, r.file) for r in rs]
            clients.append(
                {
                    "client": i,
                    "ops_executed": len(executed),
                    "ops_sha256": ops_digest(executed),
                    "plan_prefix_sha256": ops_digest(plan_operations(load, i, len(executed))),
                    "first_ops": [op.key() for op in executed[:10]],
                }
            )
        by_kind: dict[str, dict[str, int]] = {}
        for r in records:
            entry = by_kind.setdefault(r.kind, {"ok": 0, "errors": 0})
            entry["ok" if r.ok else "errors"] += 1
        integrity = integrity_summary(verdicts)
        integrity["lost_after_the_last_step"] = lost_later
        writes_acked = sum(m.writes_acked for m in self.model.files.values()) - load.files.count
        integrity["writes_acknowledged"] = writes_acked
        return {
            "experiment": {
                "name": self.experiment.name,
                "file": str(self.experiment.source) if self.experiment.source else None,
                "started_at": started_at,
                "elapsed_s": round(elapsed, 3),
                "daemon_pid": self.daemon_pid,
                "runtime_dir": str(self.runtime_dir) if self.runtime_dir else None,
                "proxies": {name: p.address for name, p in self.proxies.items()},
            },
            "config": {
                "experiment": _jsonable(self.experiment.raw),
                "daemon_toml": self.config_text,
                "load": _jsonable(asdict(load)),
            },
            "ops": {
                "total": len(records),
                "ok": sum(1 for r in records if r.ok),
                "errors": sum(errors.values()),
                "by_kind": by_kind,
            },
            "errors": dict(errors.most_common()),
            "timeseries": series,
            "faults": steps,
            "integrity": integrity,
            "clients": clients,
            "faulty_state_before_clearing": faulty_state,
            "runner_errors": self.worker_errors,
            "reproducibility": (
                "Same file and seeds: the same operations per client (ops_sha256 equals "
                "plan_prefix_sha256) and the same faulty decisions for the same call sequence; "
                "timing varies (ops per second, client interleaving, where timed steps land)."
            ),
        }


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold (inf, nan, dates, paths) as strings."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(x) for x in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# =========================================================================== the outputs
def summary_text(report: Mapping[str, Any]) -> str:
    exp = report["experiment"]
    ops = report["ops"]
    integrity = report["integrity"]
    lines = [
        f"experiment {exp['name']} ({exp['file'] or 'inline'}), started {exp['started_at']}",
        f"load: {ops['total']} ops in {exp['elapsed_s']:.1f} s: {ops['ok']} ok, "
        f"{ops['errors']} errors",
    ]
    for kind, counts in sorted(ops["by_kind"].items()):
        lines.append(f"  {kind:6} ok={counts['ok']} errors={counts['errors']}")
    lines.append("errors by status:")
    if report["errors"]:
        lines += [f"  {name}: {n}" for name, n in report["errors"].items()]
    else:
        lines.append("  none")
    lines.append("fault steps (recovery: back to >= 80% of the pre-fault throughput, no errors):")
    if not report["faults"]:
        lines.append("  none")
    for step in report["faults"]:
        at = f"t={step['at']:.2f}s" if step["at"] is not None else f"t={step['t']:.2f}s (not run)"
        if step["recovery_s"] is not None:
            recovery = f"recovered in {step['recovery_s']:.2f} s"
        elif step["at"] is not None:
            recovery = "not recovered before the end"
        else:
            recovery = ""
        lines.append(f"  {at}  {step['what']}: {step['detail']}")
        lost = f"; LOST after it: {', '.join(step['lost_files'])}" if step["lost_files"] else ""
        lines.append(f"      {recovery}{lost}".rstrip())
    lines.append(
        f"integrity: {integrity['verdict']} ({integrity['files']} files, "
        f"{integrity['writes_acknowledged']} acknowledged writes during the load; "
        + ", ".join(f"{k}={v}" for k, v in integrity["by_verdict"].items())
        + ")"
    )
    if integrity["verdict"] == "LOST":
        lines.append(
            f"!!! DATA LOSS: {len(integrity['lost'])} file(s) lost an acknowledged write: "
            + ", ".join(v["name"] for v in integrity["lost"])
            + " !!!"
        )
    elif integrity["verdict"] == "UNVERIFIED":
        lines.append(
            "!!! UNVERIFIED: could not read back "
            + ", ".join(v["name"] for v in integrity["unreadable"])
            + " !!!"
        )
    else:
        lines.append("nothing acknowledged was lost")
    if report.get("runner_errors"):
        lines.append("runner problems: " + "; ".join(report["runner_errors"]))
    return "\n".join(lines) + "\n"


def write_outputs(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(report), indent=2, allow_nan=False)
    (out / "report.json").write_text(text + "\n")
    (out / "summary.txt").write_text(summary_text(report))
    try:
        plot(report, out)
    except ImportError as exc:  # matplotlib is optional: pip install 'rdbss[experiment]'
        (out / "plots-missing.txt").write_text(f"no plots: {exc}\n")


def plot(report: Mapping[str, Any], out: Path) -> list[Path]:
    """throughput.png, latency.png and errors.png (matplotlib, Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    series = report["timeseries"]
    xs = [s["t"] + 0.5 for s in series]
    steps = [s for s in report["faults"] if s["at"] is not None]
    name = report["experiment"]["name"]

    def mark_steps(ax: Any) -> None:
        for step in steps:
            ax.axvline(step["at"], color="tab:red", linestyle="--", linewidth=1, zorder=4)
            label = f"{step['index'] + 1}: {step['action']} {step['target']}"
            ax.annotate(
                label,
                xy=(step["at"], 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color="tab:red",
                zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )

    paths = []
    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ok = [s["throughput"] for s in series]
    ax.bar(xs, ok, width=0.9, color="tab:blue", label="ok ops/s")
    ax.bar(
        xs,
        [s["errors"] for s in series],
        width=0.9,
        bottom=ok,
        color="tab:orange",
        label="errors/s",
    )
    mark_steps(ax)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("operations per second")
    ax.set_title(f"{name}: throughput")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    paths.append(out / "throughput.png")
    fig.savefig(paths[-1], dpi=100)

    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("max_ms", "max")):
        values = [s[key] if s[key] is not None else math.nan for s in series]
        ax.plot(xs, values, marker=".", label=label)
    if any(s["max_ms"] for s in series):
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _pos: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    mark_steps(ax)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{name}: latency per second")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=100)

    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    errors = report["errors"]
    if errors:
        names = list(errors)[::-1]
        ax.barh(names, [errors[n] for n in names], color="tab:orange")
        for i, n in enumerate(names):
            ax.annotate(
                str(errors[n]),
                xy=(errors[n], i),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_xlabel("failed operations")
    else:
        ax.text(0.5, 0.5, "no errors", ha="center", va="center", fontsize=16)
        ax.set_axis_off()
    ax.set_title(f"{name}: errors by status")
    fig.tight_layout()
    paths.append(out / "errors.png")
    fig.savefig(paths[-1], dpi=100)
    return paths


# ========================================================================== command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["run", "plan"])
    parser.add_argument("file", help="experiment file (TOML)")
    parser.add_argument("--out", help="report folder (default: ./experiment-<name>-<time>)")
    parser.add_argument("--client", type=int, default=0, help="plan: which client")
    parser.add_argument("--count", type=int, default=20, help="plan: how many operations")


def command(args: argparse.Namespace) -> int:
    """``rdbss experiment run|plan``: 0 when nothing acknowledged was lost, 1 otherwise."""
    experiment = load_experiment(Path(args.file))
    if args.action == "plan":
        if not 0 <= args.client < experiment.load.clients:
            raise ExperimentError(f"--client must be 0..{experiment.load.clients - 1}")
        ops = plan_operations(experiment.load, args.client, max(0, args.count))
        for op in ops:
            print(op.key())
        print(f"sha256 {ops_digest(ops)}")
        return 0
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path(f"experiment-{experiment.name}-{stamp}")
    report = Runner(experiment, out, log=lambda m: print(m, file=sys.stderr, flush=True)).run()
    sys.stdout.write(summary_text(report))
    print(f"report: {out}/report.json", file=sys.stderr)
    verdict = report["integrity"]["verdict"]
    if verdict != "OK":
        print(f"experiment: integrity {verdict}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rdbss.experiment", description="run a fault-injection experiment"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command(args)
    except ConfigError as exc:
        print(f"experiment: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"experiment: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
