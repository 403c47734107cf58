"""The suite's notify tests (rdbss.testing.suite.notify) against every backend here."""

from rdbss.testing.suite.notify import *  # noqa: F403
