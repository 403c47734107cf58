"""The suite's security tests (rdbss.testing.suite.security) against every backend here."""

from rdbss.testing.suite.security import *  # noqa: F403
