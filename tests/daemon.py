"""The test daemon (rdbss.testing.daemon), under the name the tests import."""

from rdbss.testing.daemon import (
    Daemon,
    UnreadingClient,
    daemon_on_config,
    rss_bytes,
    running_daemon,
    stop_by_pid,
    wait_until,
    write_config,
)

__all__ = [
    "Daemon",
    "UnreadingClient",
    "daemon_on_config",
    "rss_bytes",
    "running_daemon",
    "stop_by_pid",
    "wait_until",
    "write_config",
]
