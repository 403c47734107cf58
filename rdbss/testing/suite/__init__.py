"""The mini-redirector contract tests, as importable modules.

Each module holds pytest tests that take the ``backend`` fixture (a
:class:`rdbss.testing.suite.harness.ConformanceBackend`); :mod:`rdbss.testing.plugin` provides
it for any configured backend, and a project of its own can re-export a module's tests in one of
its test files (``from rdbss.testing.suite.contract import *``) next to its own ``backend``
fixture. ``python -m rdbss.testing`` runs all of :data:`rdbss.testing.SUITE_MODULES`.
"""
