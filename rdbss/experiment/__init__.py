r"""Reproducible fault-isolation experiments: ``rdbss experiment run FILE [--out DIR]``.

A run starts its own daemon (a private runtime directory under /tmp) from the setup the file
names, plus the fault proxies and server processes it lists; drives a seeded main load and any
number of control loads (other shares, other mini-redirectors) through ``rdbss.client.Client``;
carries out a timed fault schedule; undoes every fault, reads every file back and checks that no
acknowledged write was lost; and always stops what it started (by pid). The report says how far
the fault reached: the control loads' latency and errors inside the fault windows against
outside them.

The package, one concern per module:

- ``schema``     the experiment file as typed structs, and its parser (ExperimentError);
- ``plan``       the seeded operations of each client, file names and write contents (pure);
- ``load``       a load's clients, open or closed loop, recording every operation;
- ``faults``     the fault timeline and its actions on the daemon, proxies and servers;
- ``integrity``  what every file must hold at the end (acknowledged/lost/corrupted);
- ``stats``      100 ms bins, fault windows, recovery, isolation, repeats (pure);
- ``daemon``     the daemon configuration the run writes (placeholders, TOML);
- ``runner``     one run from start to report;
- ``progress``   the progress line while it runs;
- ``report``     the report structs, summary, records (CSV/Parquet), compare;
- ``plots``      the PNG figures and the self-contained report.html;
- ``cli``        ``run`` / ``plan`` / ``compare`` and ``--repeat``.

Experiment file (TOML)::

    [experiment]
    name = "blackhole-webdav"

    [setup]                            # the daemon: inline tables, or config = "path.toml"
    [setup.daemon]                     # (relative to this file); runtime_dir is always private
    request_timeout = 5.0              # defaults: request/connect timeout 5 s
    [[setup.minirdr]]
    name = "flaky"
    kind = "faulty"                    # a faulty mini-redirector wraps another kind
    wraps = "local"
    [setup.minirdr.options.shares]
    data = "{tmp}/flaky"               # {tmp}: the run's private folder (removed at the end)

    [[setup.proxy]]                    # a FaultProxy (rdbss/faultproxy.py), started first;
    name = "dav"                       # "{proxy.dav.port}" / "{proxy.dav.host}" in the setup
    target = "127.0.0.1:8080"          # are its listening address; "{env.VAR}" an environment
    seed = 1                           # variable (a server you started)

    [[setup.server]]                   # a server process the run starts, restarts on a
    name = "dav"                       # "restart" step, and stops
    command = ["wsgidav", "--host", "127.0.0.1", "--port", "8080", "--root", "{tmp}/dav",
               "--auth", "anonymous"]
    ready = "127.0.0.1:8080"           # started when this accepts a connection
    folders = ["{tmp}/dav"]            # created first

    [load]                             # the main load, on the share the faults hit
    root = '\\flaky\data\exp'          # folder of the file set (created)
    model = "open"                     # open: `rate` ops/s on a fixed schedule, latency from
    rate = 200                         # each slot; closed: as fast as each client can, with
    clients = 2                        # think_ms between operations (default: open if rate)
    duration_s = 8
    seed = 42
    timeout_s = 5.0                    # each request's deadline
    mix = { stat = 0.3, read = 0.5, write = 0.2 }
    # kinds: stat read write list open create rename delete lock (lock: local and SMB only)
    [load.files]
    count = 16
    size = 4096

    [[control]]                        # control loads: same keys, on shares the faults should
    name = "ctl"                       # not reach
    root = '\\local\data\ctl'
    rate = 100

    [[fault]]                          # steps, at t seconds after the load started
    t = 2.0
    action = "set_faults"              # set_faults clear_faults kill stop cont proxy
    minirdr = "flaky"                  # reset_storm restart (see rdbss/experiment/faults.py)
    duration_s = 1.0                   # lasting faults: undone after this long
    [[fault.rules]]                    # rules as in rdbss/minirdrs/faulty/faults.py
    routine = "MRxLowIOSubmit"
    lowio_op = "READ"
    action = "status"
    status = "STATUS_UNEXPECTED_NETWORK_ERROR"
    [[fault]]
    t = 5.0
    action = "kill"                    # SIGKILL; "stop" = SIGSTOP, "cont" = SIGCONT;
    minirdr = "flaky"                  # minirdr = "connmgr": the connection manager
    # [[fault]] t = 6, action = "proxy", proxy = "dav", settings = { blackhole = true },
    #           duration_s = 1

Output in ``--out``: ``report.html`` (self-contained), ``report.json`` (the Report struct),
``summary.txt``, ``ops.csv`` (``ops.parquet`` with pyarrow), ``latency.png``,
``throughput.png``, ``errors.png``, ``recovery.png``, ``isolation.png`` and the daemon's log.
The statistics' rules (bins, windows, recovery, outcomes) are in ``rdbss/experiment/stats.py``,
the integrity rules in ``rdbss/experiment/integrity.py``.

Reproducibility: the same file and seeds give the same sequence of operations for each client
(``plan_operations``, a pure function; the report records a digest of what each client executed,
which is a prefix of its plan) and the same decisions of a faulty mini-redirector for the same
sequence of calls. What still varies is timing: how many operations fit in the duration,
latencies, how the clients interleave, where in the sequence a timed step lands, how long a
restart takes, and the jitter draws of a FaultProxy.
"""

from __future__ import annotations

from rdbss.experiment.cli import add_arguments, command, main
from rdbss.experiment.daemon import config_toml, daemon_config, placeholders, substitute
from rdbss.experiment.integrity import (
    FileVerdict,
    Integrity,
    IntegrityModel,
    integrity_summary,
    lost_after_steps,
)
from rdbss.experiment.plan import (
    Op,
    derived_seed,
    file_name,
    file_path,
    iter_plan,
    ops_digest,
    owned_files,
    plan_operations,
    write_content,
)
from rdbss.experiment.schema import (
    Experiment,
    ExperimentError,
    FaultStep,
    FileSet,
    LoadSpec,
    load_experiment,
    parse_experiment,
)
from rdbss.experiment.stats import OpRecord, percentile

__all__ = [
    "Experiment",
    "ExperimentError",
    "FaultStep",
    "FileSet",
    "FileVerdict",
    "Integrity",
    "IntegrityModel",
    "LoadSpec",
    "Op",
    "OpRecord",
    "Runner",
    "add_arguments",
    "command",
    "config_toml",
    "daemon_config",
    "derived_seed",
    "file_name",
    "file_path",
    "integrity_summary",
    "iter_plan",
    "load_experiment",
    "lost_after_steps",
    "main",
    "ops_digest",
    "owned_files",
    "parse_experiment",
    "percentile",
    "placeholders",
    "plan_operations",
    "substitute",
    "write_content",
]


def __getattr__(name: str) -> object:
    if name == "Runner":  # the runner imports the client: only when a run needs it
        from rdbss.experiment.runner import Runner

        return Runner
    raise AttributeError(name)
