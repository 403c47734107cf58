"""One run of an experiment: start the server processes and fault proxies the file names, then a
private daemon; create each load's file set; run the loads (the main one and the controls) and
the fault timeline together; undo every fault; read every file back; stop everything the run
started (by pid: the daemon's own session, each server's own session); build the report.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rdbss.client import Client
from rdbss.config import parse_config
from rdbss.experiment.daemon import (
    check_env,
    config_toml,
    daemon_config,
    placeholders,
    share_folders,
    substitute,
)
from rdbss.experiment.faults import FaultActions, ServerProcess, StepResult, timeline
from rdbss.experiment.integrity import FileVerdict, integrity_summary, lost_after_steps
from rdbss.experiment.load import Load, retry
from rdbss.experiment.output import write_outputs
from rdbss.experiment.plan import Op, file_name, file_path, ops_digest, plan_operations
from rdbss.experiment.progress import Progress
from rdbss.experiment.report import (
    ClientDigest,
    LoadResult,
    Report,
    RunInfo,
    key_figures,
    worst,
)
from rdbss.experiment.schema import Experiment, ExperimentError
from rdbss.experiment.stats import OpRecord, bins, fault_windows, isolation, recoveries
from rdbss.faultproxy import FaultProxy, parse_address
from rdbss.wire.status import NtStatusError

FAULT_CLIENT_TIMEOUT_S = 5.0
SETUP_DEADLINE_S = 30.0  # creating the file sets
VERIFY_DEADLINE_S = 40.0  # clearing faults and reading every file back
DAEMON_STOP_TIMEOUT_S = 20.0
JOIN_GRACE_S = 15.0  # past duration + request timeout, how long a load thread may take
MOUNT_TIMEOUT_S = 10.0
REPRODUCIBILITY = (
    "Same file and seeds: the same operations per client (ops_sha256 equals "
    "plan_prefix_sha256) and the same faulty decisions for the same call sequence; timing "
    "varies (operations per second, client interleaving, where timed steps land)."
)


def version() -> str:
    """rdbss's version, and the git commit of this code when it runs from a checkout (the
    report must name exactly what ran)."""
    try:
        number = importlib.metadata.version("rdbss")
    except importlib.metadata.PackageNotFoundError:
        number = "unknown"
    try:
        described = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5.0,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return number
    commit = described.stdout.strip()
    return f"{number} (git {commit})" if described.returncode == 0 and commit else number


class Runner:
    """One run of an experiment: ``Runner(experiment, out).run()`` -> the Report."""

    def __init__(
        self,
        experiment: Experiment,
        out: Path,
        log: Callable[[str], None] = print,
        *,
        command: str | None = None,
        run_index: int = 0,
        progress: TextIO | None = None,
    ):
        self.experiment = experiment
        self.out = out
        self.log = log
        self.command = command or shlex.join([sys.argv[0], *sys.argv[1:]])
        self.run_index = run_index
        self.progress_stream = progress
        self.base: Path | None = None
        self.daemon_pid: int | None = None
        self.runtime_dir: Path | None = None
        self.proxies: dict[str, FaultProxy] = {}
        self.servers: dict[str, ServerProcess] = {}
        self.stop_event = threading.Event()
        self.t0 = 0.0
        self.loads = [Load(spec, self._client, self.stop_event) for spec in experiment.loads]
        self.runner_errors: list[str] = []
        self.steps = [
            StepResult(s.index, s.t, s.action, s.target, s.describe()) for s in experiment.faults
        ]
        self.actions = FaultActions(lambda: self.daemon_pid, self.proxies, self.servers)
        self.config_text = ""
        self.mounts: list[Path] = []

    # ------------------------------------------------------------------ set-up and tear-down
    def _start(self) -> None:
        from rdbss.actors.supervisor import start_detached
        from rdbss.config import load_config

        self.base = Path(tempfile.mkdtemp(prefix="rdx-", dir="/tmp"))  # ipc paths are short
        replacements = placeholders(
            self.base, {}, text=json.dumps(self.experiment.raw, default=str)
        )
        for spec in self.experiment.proxies:
            target = substitute(spec.target, replacements)
            check_env(target)
            try:
                host, port = parse_address(str(target))
            except ValueError as exc:
                raise ExperimentError(f"setup.proxy {spec.name}: {exc}") from None
            proxy = FaultProxy(
                host, port, port=spec.listen_port, seed=spec.seed, **dict(spec.settings)
            )
            self.proxies[spec.name] = proxy.start()
            replacements[f"{{proxy.{spec.name}.host}}"] = proxy.host
            replacements[f"{{proxy.{spec.name}.port}}"] = proxy.port
        self.actions.replacements = replacements
        for volume in self.experiment.volumes:
            self._mount(Path(substitute(volume.path, replacements)), volume.size_mb)
        for server_spec in self.experiment.servers:
            argv = [str(a) for a in substitute(list(server_spec.command), replacements)]
            check_env(argv)
            for folder in substitute(list(server_spec.folders), replacements):
                Path(folder).mkdir(parents=True, exist_ok=True)
            server = ServerProcess(
                server_spec,
                argv,
                str(substitute(server_spec.ready, replacements)),
                self.base / f"server-{server_spec.name}.log",
            )
            self.servers[server_spec.name] = server
            server.start()
        config = daemon_config(self.experiment, self.base, replacements)
        self.config_text = config_toml(config)
        parse_config(self.config_text)  # validates before anything starts
        for entry in config.get("minirdr", []):
            for folder in share_folders(entry):
                path = Path(folder).expanduser()
                if path.is_relative_to(self.base):
                    path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.base / "rdbss.toml"
        cfg_path.write_text(self.config_text)
        loaded = load_config(cfg_path)
        self.runtime_dir = loaded.runtime_dir
        self.daemon_pid = start_detached(cfg_path, loaded)

    def _mount(self, path: Path, size_mb: int) -> None:
        """A small tmpfs at ``path`` (a [[setup.volume]]): needs root."""
        if os.geteuid() != 0:
            raise RuntimeError("setup.volume mounts a tmpfs: run the experiment as root")
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0777", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            timeout=MOUNT_TIMEOUT_S,
        )
        self.mounts.append(path)

    def _stop(self) -> None:
        from rdbss.actors.supervisor import read_pid, stop_daemon

        self.actions.cont_all()
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
        for server in self.servers.values():
            server.stop()
            with contextlib.suppress(OSError):
                shutil.copyfile(server.log_path, self.out / server.log_path.name)
        for proxy in self.proxies.values():
            try:
                proxy.stop()
            except TimeoutError as exc:
                self.log(f"experiment: {exc}")
        for path in reversed(self.mounts):
            result = subprocess.run(
                ["umount", "-l", str(path)], capture_output=True, timeout=MOUNT_TIMEOUT_S
            )
            if result.returncode:
                self.log(f"experiment: umount {path}: {result.stderr.decode().strip()}")
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def _client(self, timeout: float) -> Client:
        assert self.runtime_dir is not None
        return Client(self.runtime_dir, timeout=timeout)

    # ------------------------------------------------------------------ the fault timeline
    def _faults(self) -> None:
        end = self.t0 + self.experiment.load.duration_s
        faults = self.experiment.faults
        resets: dict[int, int] = {}  # a reset storm's step -> resets so far
        client = None
        try:
            client = self._client(FAULT_CLIENT_TIMEOUT_S)
            for entry in timeline(faults):
                step, result = faults[entry.step], self.steps[entry.step]
                when = self.t0 + entry.t
                if entry.what == "do" and when >= end:
                    result.detail = "not run: after the end of the load"
                    continue
                if entry.what != "do" and result.at is None:
                    continue  # its step did not run
                stopped = self.stop_event.wait(max(0.0, when - time.monotonic()))
                if stopped and entry.what == "do":  # an undo still runs, early
                    result.detail = "not run: the experiment was stopped"
                    continue
                at = round(time.monotonic() - self.t0, 3)
                try:
                    if entry.what == "do":
                        result.at = at
                        result.detail = self.actions.do(client, step)
                        result.ok = True
                    elif entry.what == "undo":
                        result.ended_at = at
                        result.detail += "; then " + self.actions.undo(client, step)
                    else:
                        resets[entry.step] = resets.get(entry.step, 1) + 1
                        detail = self.actions.reset(step)
                        result.detail = f"{resets[entry.step]} resets, the last: {detail}"
                except Exception as exc:  # recorded in the report: the schedule goes on
                    result.detail += f"; {entry.what} failed: {type(exc).__name__}: {exc}"
                    if entry.what == "do":
                        result.ok = False
                if entry.what != "reset":
                    self.log(f"  t={at:6.2f}s  {entry.what} {step.describe()}: {result.detail}")
        except (NtStatusError, OSError) as exc:
            self.runner_errors.append(f"fault schedule: {exc}")
        finally:
            if client is not None:
                client.close()

    # ------------------------------------------------------------------ verification
    def _clear_and_verify(self) -> dict[str, Any]:
        self.actions.cont_all()
        for proxy in self.proxies.values():
            proxy.clear()
        faulty_state: dict[str, Any] = {}
        with self._client(self.experiment.load.timeout_s) as c:
            for entry in self.experiment.config.get("minirdr", []):
                if entry.get("kind") != "faulty":
                    continue
                name = str(entry.get("name"))
                with contextlib.suppress(NtStatusError, OSError):
                    faulty_state[name] = c.faults(name)
                try:
                    retry(
                        f"clearing the faults of {name}",
                        functools.partial(c.set_faults, name, []),
                        time.monotonic() + VERIFY_DEADLINE_S / 4,
                    )
                except RuntimeError as exc:  # recorded; reading back still tells what it can
                    self.runner_errors.append(str(exc))
        return faulty_state

    def _verify(self, load: Load) -> list[FileVerdict]:
        spec = load.spec
        deadline = time.monotonic() + VERIFY_DEADLINE_S
        verdicts = []
        with self._client(spec.timeout_s) as c:
            for index in range(spec.files.count):
                name = file_name(spec, index)
                path = file_path(spec, index)
                try:  # at least one attempt per file, even past the deadline
                    found = retry(
                        f"reading {path}",
                        functools.partial(c.read_bytes, path),
                        deadline,
                        final=(FileNotFoundError,),
                    )
                except FileNotFoundError:
                    verdicts.append(load.model.verify(name, None, missing=True))
                    continue
                except RuntimeError as exc:
                    self.runner_errors.append(str(exc))
                    found = None
                verdicts.append(load.model.verify(name, found))
        return verdicts

    # ------------------------------------------------------------------ the whole run
    def run(self) -> Report:
        self.out.mkdir(parents=True, exist_ok=True)
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        main = self.experiment.load
        name = self.experiment.name
        duration = max(spec.duration_s for spec in self.experiment.loads)
        verdicts: list[list[FileVerdict]] = []
        faulty_state: dict[str, Any] = {}
        elapsed = 0.0
        try:
            self.log(f"experiment {name}: starting the daemon")
            self._start()
            deadline = time.monotonic() + SETUP_DEADLINE_S
            for load in self.loads:
                load.create_file_set(deadline)
            self.log(
                f"experiment {name}: {len(self.loads)} load(s) for {duration:g} s, "
                f"{len(self.steps)} fault step(s)"
            )
            threads = [
                threading.Thread(
                    target=load.worker, args=(i,), name=f"{load.spec.name}-{i}", daemon=True
                )
                for load in self.loads
                for i in range(load.spec.clients)
            ]
            threads.append(threading.Thread(target=self._faults, name="faults", daemon=True))
            progress = (
                Progress(self.progress_stream, self.loads, self.steps, duration)
                if self.progress_stream is not None
                else None
            )
            self.t0 = time.monotonic()
            for load in self.loads:
                load.t0 = self.t0
            if progress:
                progress.start(self.t0)
            for thread in threads:
                thread.start()
            timeout = max(spec.timeout_s for spec in self.experiment.loads)
            deadline = self.t0 + duration + timeout + JOIN_GRACE_S
            try:
                for thread in threads:
                    thread.join(max(0.0, deadline - time.monotonic()))
            finally:
                self.stop_event.set()
                for thread in threads:
                    thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
                if progress:
                    progress.finish()
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:
                self.runner_errors.append(f"threads still running at the deadline: {stuck}")
            elapsed = time.monotonic() - self.t0
            self.log(f"experiment {name}: verifying every file")
            faulty_state = self._clear_and_verify()
            verdicts = [self._verify(load) for load in self.loads]
        finally:
            self._stop()
        records = sorted(
            (r for load in self.loads for r in load.all_records()), key=lambda r: r.end
        )
        report = self._report(started_at, elapsed, verdicts, faulty_state, records, main.duration_s)
        write_outputs(report, records, self.out)
        return report

    def _load_result(
        self,
        load: Load,
        role: str,
        verdicts: list[FileVerdict],
        records: list[OpRecord],
        windows: list[Any],
    ) -> LoadResult:
        spec = load.spec
        errors = Counter(r.status for r in records if r.status is not None)
        outcomes = Counter(r.outcome for r in records)
        by_kind: dict[str, dict[str, int]] = {}
        for r in records:
            entry = by_kind.setdefault(r.kind, {"ok": 0, "errors": 0})
            entry["ok" if r.ok else "errors"] += 1
        clients = []
        for i, rs in enumerate(load.records):
            executed = [Op(r.client, r.seq, r.kind, r.file) for r in rs]
            clients.append(
                ClientDigest(
                    i,
                    len(executed),
                    ops_digest(executed),
                    ops_digest(plan_operations(spec, i, len(executed))),
                    [op.key() for op in executed[:10]],
                )
            )
        return LoadResult(
            name=spec.name,
            role=role,
            model=spec.model,
            root=spec.root,
            duration_s=spec.duration_s,
            ops=len(records),
            ok=outcomes["ok"],
            fail=outcomes["fail"],
            info=outcomes["info"],
            by_kind=by_kind,
            errors=dict(errors.most_common()),
            isolation=isolation(spec.name, records, windows, spec.duration_s),
            integrity=integrity_summary(spec.name, verdicts, load.model, spec.files.count),
            clients=clients,
            bins=bins(records, spec.duration_s),
        )

    def _report(
        self,
        started_at: str,
        elapsed: float,
        verdicts: list[list[FileVerdict]],
        faulty_state: dict[str, Any],
        records: list[OpRecord],
        duration_s: float,
    ) -> Report:
        faults = self.experiment.faults
        ran = [(faults[i], s.at) for i, s in enumerate(self.steps) if s.at is not None]
        ended = {s.index: s.ended_at for s in self.steps if s.ended_at is not None}
        per_load = {load.spec.name: [r for r in records if r.load == load.spec.name]
                    for load in self.loads}  # fmt: skip
        main_records = per_load[self.experiment.load.name]
        windows = fault_windows(ran, main_records, duration_s, ended)
        results = []
        for i, load in enumerate(self.loads):
            result = self._load_result(
                load,
                "main" if i == 0 else "control",
                verdicts[i] if i < len(verdicts) else [],
                per_load[load.spec.name],
                windows,
            )
            if i < len(verdicts):
                _, later = lost_after_steps(verdicts[i], [at for _, at in ran])
                result.integrity.lost_after_the_last_step = later
            results.append(result)
        main = results[0]
        report = Report(
            experiment=RunInfo(
                name=self.experiment.name,
                file=self.experiment.source,
                command=self.command,
                version=version(),
                seeds={spec.name: spec.seed for spec in self.experiment.loads},
                started_at=started_at,
                elapsed_s=round(elapsed, 3),
                daemon_pid=self.daemon_pid,
                runtime_dir=str(self.runtime_dir) if self.runtime_dir else None,
                proxies={name: p.address for name, p in self.proxies.items()},
                run=self.run_index,
            ),
            config={"experiment": _jsonable(self.experiment.raw), "daemon_toml": self.config_text},
            loads=results,
            faults=self.steps,
            windows=windows,
            recoveries=recoveries(windows, main.bins, main_records, duration_s),
            verdict=worst([r.integrity.verdict for r in results]) if verdicts else "UNVERIFIED",
            blast_radius=[r.isolation.statement for r in results[1:]],
            runner_errors=self.runner_errors + [e for load in self.loads for e in load.errors],
            faulty_state_before_clearing=faulty_state,
            reproducibility=REPRODUCIBILITY,
        )
        report.figures = key_figures(report)
        return report


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
