"""How soon a mini-redirector serves again after it is killed (SIGKILL) or frozen (SIGSTOP):
the time from the signal to the first request that succeeds, median and worst of N rounds, with
warm standby processes and, as the baseline of the same run, without them. ``python -m
benchmarks.recovery [ROUNDS]`` (20 by default). Not a test.

A frozen process is found by its stale alive file (rdbss.actors.peer), killed and restarted;
a killed one is restarted at once. The client asks the whole time, one request at a time, each
with a short deadline, so it sees the first moment the share answers again."""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time

from benchmarks.common import quantile
from rdbss.testing.daemon import Daemon, running_daemon, wait_until

ATTEMPT_S = 0.3  # each request's deadline while the share is down
SETTLE_S = 3.0  # between rounds: the next standby starts and imports
PER_DAEMON = 4  # rounds per daemon: the restart policy gives up past 5 restarts in 30 s


def _time_to_serve(d: Daemon, sig: signal.Signals) -> float:
    path = d.share + r"\probe.txt"
    with d.client(timeout=ATTEMPT_S) as c:
        c.stat(path)  # serving now
        pid = d.child_pid("local")
        start = time.monotonic()
        os.kill(pid, sig)
        while time.monotonic() - start < 30.0:
            try:
                c.stat(path)
            except OSError:
                time.sleep(0.002)
                continue
            took = time.monotonic() - start
            if d.child_pid("local") != pid:
                return took
            # answered by the old process before the signal landed: not yet down
        raise TimeoutError(f"the share did not serve again in 30 s after {sig.name}")


def _rounds(rounds: int, standby: bool, sig: signal.Signals) -> list[float]:
    times: list[float] = []
    while len(times) < rounds:
        with running_daemon(daemon_extra=f"warm_standby = {str(standby).lower()}") as d:
            (d.share_dir / "probe.txt").write_bytes(b"x")
            with d.client() as c:
                wait_until(lambda: c.stat(d.share + r"\probe.txt") is not None, 10)
            for _ in range(min(PER_DAEMON, rounds - len(times))):
                time.sleep(SETTLE_S)
                times.append(_time_to_serve(d, sig))
    return times


def run(rounds: int = 20) -> list[tuple[str, list[float]]]:
    return [
        ("SIGKILL -> serving, warm standby", _rounds(rounds, True, signal.SIGKILL)),
        ("SIGKILL -> serving, no standby (baseline)", _rounds(rounds, False, signal.SIGKILL)),
        ("SIGSTOP -> serving, warm standby", _rounds(rounds, True, signal.SIGSTOP)),
    ]


def render(rows: list[tuple[str, list[float]]]) -> str:
    out = [f"{'local mini-redirector':<44}{'median':>10}{'p90':>10}{'max':>10}{'rounds':>8}"]
    for what, times in rows:
        out.append(
            f"{what:<44}{statistics.median(times) * 1000:>8.0f}ms"
            f"{quantile(times, 0.9) * 1000:>8.0f}ms{max(times) * 1000:>8.0f}ms{len(times):>8}"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(render(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
