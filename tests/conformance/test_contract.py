"""The suite's contract tests (rdbss.testing.suite.contract) against every backend here."""

from rdbss.testing.suite.contract import *  # noqa: F403
