"""Check a mini-redirector against the rdbss contract.

- :mod:`rdbss.testing.daemon`: start and stop a real daemon (by pid, with deadlines).
- :mod:`rdbss.testing.servers`: private Samba, OpenSSH and wsgidav servers on loopback ports,
  and their pytest fixtures.
- :mod:`rdbss.testing.backend`: :class:`~rdbss.testing.backend.BackendSetup`, how the suite
  reaches a backend (daemon configuration, scratch root, host folder).
- :mod:`rdbss.testing.suite`: the contract tests as importable modules.
- :mod:`rdbss.testing.plugin`: the pytest plugin that runs them against a configured daemon.

``python -m rdbss.testing --config my.toml --minirdr NAME --root //srv/share/scratch`` runs the
suite against the mini-redirector ``NAME`` of the daemon ``my.toml`` configures (``--help``).
Needs the ``testing`` extra (pytest).
"""

#: The modules of :mod:`rdbss.testing.suite`, in the order they run: the order of
#: tests/conformance, where each backend's tests share one daemon. The cancel tests count what
#: the mini-redirector holds, so they run before the notify tests, whose watches may still be
#: pending until their deadline. (Here, not in the suite package: importing that before pytest
#: starts would stop the rewrite of its assertions.)
SUITE_MODULES = (
    "cancel",
    "contract",
    "lowio_optional",
    "notify",
    "quota",
    "registration",
    "security",
)
