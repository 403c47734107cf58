"""The suite's cancel tests (rdbss.testing.suite.cancel) against every backend here."""

from rdbss.testing.suite.cancel import *  # noqa: F403
