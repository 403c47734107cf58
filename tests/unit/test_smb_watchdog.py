"""The SMB link's watchdog: arming does not wake its thread when the deadline is later than
the wait it is in, and still fires at an earlier deadline armed after a later one."""

from __future__ import annotations

import threading

from rdbss.minirdrs.smb.link import _Watchdog


def test_an_earlier_deadline_after_a_later_one_fires() -> None:
    fired = threading.Event()
    watchdog = _Watchdog("test-watchdog", fired.set)
    try:
        with watchdog.guard(3600.0):
            pass
        with watchdog.guard(3600.0):  # later than the wait the thread may be in: no wake-up
            pass
        with watchdog.guard(0.05):
            assert fired.wait(30.0), "the earlier deadline never fired"
    finally:
        watchdog.stop()


def test_a_deadline_disarmed_in_time_does_not_fire() -> None:
    fired = threading.Event()
    watchdog = _Watchdog("test-watchdog", fired.set)
    try:
        for _ in range(100):
            with watchdog.guard(3600.0):
                pass
        assert not fired.is_set()
    finally:
        watchdog.stop()
