"""The suite's optional low I/O tests (rdbss.testing.suite.lowio_optional), every backend."""

from rdbss.testing.suite.lowio_optional import *  # noqa: F403
