"""The experiment file: its typed form (msgspec Structs) and the parser that checks it.

Every check names the table and key it refuses and says what is expected, so a bad file is one
clear ``ExperimentError`` (exit status 2) before anything starts. Parsing is pure: no process,
socket or file other than a ``setup.config`` the file names.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from rdbss.config import ConfigError

OP_KINDS = ("stat", "read", "write", "list", "open", "create", "rename", "delete", "lock")
MUTATING = frozenset({"write", "create", "rename", "delete"})
LOAD_MODELS = ("open", "closed")
FAULT_ACTIONS = (
    "set_faults",
    "clear_faults",
    "kill",
    "stop",
    "cont",
    "proxy",
    "reset_storm",
    "restart",
    "disk_full",
    "command",
)
# steps that end the fault an earlier step on the same target started
ENDING_ACTIONS = frozenset({"clear_faults", "cont"})
# steps whose fault lasts until something ends it (a later step or their own duration)
LASTING_ACTIONS = frozenset({"set_faults", "stop", "proxy", "reset_storm", "disk_full"})
ONE_SHOT_SETTINGS = frozenset({"reset", "seed"})  # proxy settings that do not last
PROCESS_TARGETS_HINT = "a mini-redirector name, or 'connmgr' for the connection manager"


class ExperimentError(ConfigError):
    """The experiment file is missing something or says something impossible."""


class FileSet(msgspec.Struct, frozen=True):
    count: int = 16
    size: int = 4096
    prefix: str = "exp-"


class LoadSpec(msgspec.Struct, frozen=True):
    """One load: the experiment's own (``[load]``) or a control load (``[[control]]``).

    ``model = "open"``: each client starts an operation every ``clients / rate`` seconds on a
    fixed schedule; an operation's latency counts from its intended start, so time spent queued
    behind a stalled one is measured (no coordinated omission). ``"closed"``: each client runs
    its next operation as soon as the previous one ends, after ``think_ms``."""

    root: str
    name: str = "main"
    mix: tuple[tuple[str, float], ...] = (("read", 0.5), ("stat", 0.3), ("write", 0.2))
    files: FileSet = FileSet()
    model: str = "closed"
    rate: float = 0.0
    think_ms: float = 0.0
    duration_s: float = 10.0
    clients: int = 1
    seed: int = 0
    timeout_s: float = 5.0


class FaultStep(msgspec.Struct, frozen=True):
    index: int
    t: float
    action: str
    target: str  # a mini-redirector (or 'connmgr'), a proxy or a server name
    rules: tuple[dict[str, Any], ...] = ()
    seed: int | None = None
    settings: dict[str, Any] = {}
    duration_s: float | None = None  # the runner undoes the fault after this long
    interval_s: float = 0.1  # reset_storm: between two resets
    path: str = ""  # disk_full: a folder on the volume to fill (placeholders allowed)
    command: tuple[str, ...] = ()  # command: argv (placeholders allowed)

    def describe(self) -> str:
        lasting = f" for {self.duration_s:g} s" if self.duration_s is not None else ""
        if self.action == "set_faults":
            rules = "; ".join(describe_rule(r) for r in self.rules) or "no rules"
            seed = f", seed {self.seed}" if self.seed is not None else ""
            return f"set faults on {self.target}: {rules}{seed}{lasting}"
        if self.action == "clear_faults":
            return f"clear faults on {self.target}"
        if self.action in ("kill", "stop", "cont"):
            return f"SIG{self.action.upper()} {self.target}{lasting}"
        if self.action == "restart":
            return f"restart server {self.target}"
        if self.action == "disk_full":
            return f"fill the volume of {self.path}{lasting}"
        if self.action == "command":
            return f"run {' '.join(self.command)}"
        if self.action == "reset_storm":
            return f"TCP reset storm on {self.target} every {self.interval_s:g} s{lasting}"
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"proxy {self.target}: {settings}{lasting}"

    @property
    def lasting(self) -> bool:
        """Its fault lasts until something ends it (a proxy step that only resets does not)."""
        if self.action == "proxy":
            return bool(set(self.settings) - ONE_SHOT_SETTINGS)
        return self.action in LASTING_ACTIONS

    @property
    def label(self) -> str:
        return f"{self.index + 1}: {self.action} {self.target}"


def describe_rule(rule: Mapping[str, Any]) -> str:
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


class ProxySpec(msgspec.Struct, frozen=True):
    name: str
    target: str  # host:port, placeholders allowed ({port.NAME}, {env.X})
    listen_port: int = 0
    seed: int = 0
    settings: dict[str, Any] = {}


class ServerSpec(msgspec.Struct, frozen=True):
    """A server process the runner starts before the daemon, restarts on a ``restart`` step
    and stops at the end: ``command`` (placeholders allowed), ready when ``ready`` (host:port)
    accepts a TCP connection."""

    name: str
    command: tuple[str, ...]
    ready: str
    folders: tuple[str, ...] = ()  # created before the first start


class VolumeSpec(msgspec.Struct, frozen=True):
    """A small tmpfs the runner mounts at ``path`` (root only) for a share or a server's root,
    so ``disk_full`` fills a few MiB, not the machine's disk."""

    path: str
    size_mb: int


class Experiment(msgspec.Struct, frozen=True):
    name: str
    source: str | None
    raw: dict[str, Any]  # the file as parsed (echoed into the report)
    config: dict[str, Any]  # the daemon configuration tables (before placeholders)
    proxies: tuple[ProxySpec, ...]
    servers: tuple[ServerSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    load: LoadSpec
    controls: tuple[LoadSpec, ...]
    faults: tuple[FaultStep, ...]

    @property
    def loads(self) -> tuple[LoadSpec, ...]:
        return (self.load, *self.controls)


def check_proxy_settings(settings: Mapping[str, Any]) -> None:
    """Raise ValueError for a setting a FaultProxy would refuse (imported here: the proxy's
    asyncio is not needed to parse, or to build the command line's parser)."""
    from rdbss.faultproxy import ProxySettings, apply_settings

    apply_settings(ProxySettings(), settings)


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


LOAD_KEYS = {
    "name",
    "root",
    "mix",
    "files",
    "model",
    "rate",
    "think_ms",
    "duration_s",
    "clients",
    "seed",
    "timeout_s",
}


def parse_load(
    data: Mapping[str, Any], where: str = "load", default_name: str = "load"
) -> LoadSpec:
    _unknown(data, LOAD_KEYS, where)
    root = data.get("root")
    if not isinstance(root, str) or not root.replace("/", "\\").startswith("\\\\"):
        raise ExperimentError(rf"{where}.root must be a UNC folder (\\server\share[\dir])")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise ExperimentError(f"{where}.name must be a plain name (letters, digits, - and _)")
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
    rate = _num(data, "rate", 0.0, where)
    model = data.get("model", "open" if rate > 0 else "closed")
    if model not in LOAD_MODELS:
        raise ExperimentError(f"{where}.model must be one of {LOAD_MODELS}, not {model!r}")
    if model == "open" and rate <= 0:
        raise ExperimentError(f"{where}: an open-loop load needs rate > 0 (operations/s)")
    return LoadSpec(
        root=root.replace("/", "\\").rstrip("\\"),
        name=name,
        mix=tuple((k, w / total) for k, w in mix),
        files=files,
        model=model,
        rate=rate,
        think_ms=_num(data, "think_ms", 0.0, where),
        duration_s=_num(data, "duration_s", 10.0, where, minimum=0.1),
        clients=clients,
        seed=_int(data, "seed", 0, where, minimum=-(2**63)),
        timeout_s=_num(data, "timeout_s", 5.0, where, minimum=0.1),
    )


FAULT_KEYS = {
    "t",
    "action",
    "minirdr",
    "proxy",
    "server",
    "rules",
    "seed",
    "settings",
    "duration_s",
    "interval_s",
    "path",
    "command",
}


def parse_fault(
    index: int, data: Any, proxies: set[str], servers: set[str] | frozenset[str] = frozenset()
) -> FaultStep:
    where = f"fault #{index + 1}"
    if not isinstance(data, dict):
        raise ExperimentError(f"{where} must be a table")
    _unknown(data, FAULT_KEYS, where)
    action = data.get("action")
    if action not in FAULT_ACTIONS:
        raise ExperimentError(f"{where}: action must be one of {FAULT_ACTIONS}, not {action!r}")
    t = _num(data, "t", -1.0, where, minimum=0.0)
    duration: float | None = None
    if "duration_s" in data:
        if action not in LASTING_ACTIONS:
            raise ExperimentError(
                f"{where}: duration_s is for a lasting fault ({sorted(LASTING_ACTIONS)})"
            )
        duration = _num(data, "duration_s", 0.0, where, minimum=0.01)
    if action == "reset_storm" and duration is None:
        raise ExperimentError(f"{where}: reset_storm needs duration_s")
    interval = _num(data, "interval_s", 0.1, where, minimum=0.01)
    if action in ("proxy", "reset_storm"):
        target = data.get("proxy")
        if target not in proxies:
            raise ExperimentError(f"{where}: proxy must name a [[setup.proxy]], not {target!r}")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise ExperimentError(f"{where}: settings must be a table")
        changes = {k: v for k, v in settings.items() if k not in ("reset", "seed")}
        try:
            check_proxy_settings(changes)
        except ValueError as exc:
            raise ExperimentError(f"{where}: {exc}") from None
        return FaultStep(
            index, t, action, str(target), settings=dict(settings), duration_s=duration,
            interval_s=interval,
        )  # fmt: skip
    if action == "disk_full":
        path = data.get("path")
        if not isinstance(path, str) or not path:
            raise ExperimentError(f"{where}: disk_full needs path = <a folder on the volume>")
        return FaultStep(index, t, action, "disk", duration_s=duration, path=path)
    if action == "command":
        argv = data.get("command")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ExperimentError(f"{where}: command needs command = [argv strings]")
        return FaultStep(index, t, action, argv[0].rsplit("/", 1)[-1], command=tuple(argv))
    if action == "restart":
        target = data.get("server")
        if target not in servers:
            raise ExperimentError(f"{where}: server must name a [[setup.server]], not {target!r}")
        return FaultStep(index, t, action, str(target))
    target = data.get("minirdr")
    if not isinstance(target, str) or not target:
        raise ExperimentError(f"{where}: needs minirdr = <name> ({PROCESS_TARGETS_HINT})")
    rules: tuple[dict[str, Any], ...] = ()
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ExperimentError(f"{where}: seed must be an integer")
    if action == "set_faults":
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise ExperimentError(f"{where}: set_faults needs rules (a list of tables)")
        from rdbss.minirdrs.faulty.faults import FaultError, parse_rules

        try:
            parse_rules(raw_rules)
        except FaultError as exc:
            raise ExperimentError(f"{where}: {exc}") from None
        rules = tuple(raw_rules)
    return FaultStep(index, t, action, target, rules=rules, seed=seed, duration_s=duration)


def _parse_proxies(setup: Mapping[str, Any], where: str) -> list[ProxySpec]:
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
            target = str(raw.get("target", ""))
            if "{" not in target:
                from rdbss.faultproxy import parse_address

                parse_address(target)
            settings = raw.get("settings", {})
            check_proxy_settings(settings)
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
    return proxies


def _parse_servers(setup: Mapping[str, Any], where: str) -> list[ServerSpec]:
    servers: list[ServerSpec] = []
    for i, raw in enumerate(setup.get("server", [])):
        sw = f"{where}: setup.server #{i + 1}"
        if not isinstance(raw, dict):
            raise ExperimentError(f"{sw} must be a table")
        _unknown(raw, {"name", "command", "ready", "folders"}, sw)
        name = raw.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise ExperimentError(f"{sw}: needs a name (letters, digits, _)")
        command = raw.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) for a in command)
        ):
            raise ExperimentError(f"{sw}: command must be a list of strings (argv)")
        ready = raw.get("ready")
        if not isinstance(ready, str) or ":" not in ready:
            raise ExperimentError(f"{sw}: ready must be host:port (placeholders allowed)")
        folders = raw.get("folders", [])
        if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
            raise ExperimentError(f"{sw}: folders must be a list of paths")
        servers.append(ServerSpec(name, tuple(command), ready, tuple(folders)))
    if len({s.name for s in servers}) != len(servers):
        raise ExperimentError(f"{where}: two servers have the same name")
    return servers


def _parse_volumes(setup: Mapping[str, Any], where: str) -> tuple[VolumeSpec, ...]:
    volumes = []
    for i, raw in enumerate(setup.get("volume", [])):
        vw = f"{where}: setup.volume #{i + 1}"
        if not isinstance(raw, dict):
            raise ExperimentError(f"{vw} must be a table")
        _unknown(raw, {"path", "size_mb"}, vw)
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("{tmp}/"):
            raise ExperimentError(f"{vw}: path must be a folder under {{tmp}}/")
        size = _int(raw, "size_mb", 16, vw, minimum=1)
        if size > 1024:
            raise ExperimentError(f"{vw}: size_mb: at most 1024")
        volumes.append(VolumeSpec(path, size))
    return tuple(volumes)


def parse_experiment(
    data: Mapping[str, Any], source: Path | None = None, base_dir: Path | None = None
) -> Experiment:
    """A parsed experiment file -> Experiment; raises ExperimentError."""
    where = str(source) if source else "experiment"
    _unknown(data, {"experiment", "setup", "load", "control", "fault"}, where)
    meta = _table(data, "experiment", where)
    name = meta.get("name", source.stem if source else "experiment")
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"{where}: experiment.name must be a string")
    setup = _table(data, "setup", where)
    _unknown(setup, {"config", "daemon", "minirdr", "proxy", "server", "volume"}, f"{where}: setup")
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
    proxies = _parse_proxies(setup, where)
    servers = _parse_servers(setup, where)
    volumes = _parse_volumes(setup, where)
    load = parse_load(_table(data, "load", where), f"{where}: load", "main")
    raw_controls = data.get("control", [])
    if not isinstance(raw_controls, list) or not all(isinstance(c, dict) for c in raw_controls):
        raise ExperimentError(f"{where}: control must be an array of tables ([[control]])")
    controls = tuple(
        parse_load(c, f"{where}: control #{i + 1}", f"control{i + 1}")
        for i, c in enumerate(raw_controls)
    )
    names = [ld.name for ld in (load, *controls)]
    if len(set(names)) != len(names):
        raise ExperimentError(f"{where}: two loads have the same name ({names})")
    raw_faults = data.get("fault", [])
    if not isinstance(raw_faults, list):
        raise ExperimentError(f"{where}: fault must be an array of tables ([[fault]])")
    proxy_names = {p.name for p in proxies}
    server_names = {s.name for s in servers}
    faults = [parse_fault(i, f, proxy_names, server_names) for i, f in enumerate(raw_faults)]
    faults.sort(key=lambda s: (s.t, s.index))
    return Experiment(
        name,
        str(source) if source else None,
        dict(data),
        config,
        tuple(proxies),
        tuple(servers),
        volumes,
        load,
        controls,
        tuple(faults),
    )


def load_experiment(path: Path) -> Experiment:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ExperimentError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    return parse_experiment(data, path, path.parent)
