"""The suite's registration tests (rdbss.testing.suite.registration) against every backend here."""

from rdbss.testing.suite.registration import *  # noqa: F403
