"""The suite's quota tests (rdbss.testing.suite.quota) against every backend here."""

from rdbss.testing.suite.quota import *  # noqa: F403
