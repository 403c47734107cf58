"""The mini-redirector contract tests, as importable modules.

Each module holds pytest tests that take the ``backend`` fixture (a
:class:`rdbss.testing.suite.harness.ConformanceBackend`); :mod:`rdbss.testing.plugin` provides
it for any configured backend, and a project of its own can re-export a module's tests in one of
its test files (``from rdbss.testing.suite.contract import *``) next to its own ``backend``
fixture. ``python -m rdbss.testing`` runs all of :data:`MODULES`.
"""

#: The suite's modules, in the order they run: the order of tests/conformance, where each
#: backend's tests share one daemon. The cancel tests count what the mini-redirector holds, so
#: they run before the notify tests, whose watches may still be pending until their deadline.
MODULES = (
    "cancel",
    "contract",
    "lowio_optional",
    "notify",
    "quota",
    "registration",
    "security",
)
