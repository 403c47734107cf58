"""MRxQueryQuotaInfo / MRxSetQuotaInfo: only a backend whose server keeps quotas registers them
(SMB: the server's quota entries; the conformance Samba has no quota source, so its list is
empty; tests/integration/test_minirdr_quota.py runs one that has). The others leave them
unregistered and the core answers STATUS_NOT_IMPLEMENTED: no quota is made up from free
space."""

from __future__ import annotations

import pytest

from rdbss.testing.suite.harness import ConformanceBackend, raises_status
from rdbss.wire import NtStatus, Routine

S = NtStatus


def test_quota_query_answers_the_servers_entries(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryQuotaInfo)
    d = backend.fresh_dir()
    entries = backend.client.query_quota(d.unc)
    assert isinstance(entries, list)
    for entry in entries:
        assert entry["sid"].startswith("S-1-") and entry["used"] >= 0, entry


def test_quota_set_refuses_malformed_entries(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetQuotaInfo)
    d = backend.fresh_dir()
    with raises_status(S.STATUS_INVALID_PARAMETER):
        backend.client.set_quota(d.unc, [{"sid": "S-1-22-1-0", "limit": "lots"}])


@pytest.mark.parametrize("routine", [Routine.MRxQueryQuotaInfo, Routine.MRxSetQuotaInfo])
def test_unregistered_quota_answers_not_implemented(
    backend: ConformanceBackend, routine: Routine
) -> None:
    if backend.registers(routine):
        pytest.skip(f"{backend.kind} registers {routine}")
    d = backend.fresh_dir()
    with raises_status(S.STATUS_NOT_IMPLEMENTED):
        if routine == Routine.MRxQueryQuotaInfo:
            backend.client.query_quota(d.unc)
        else:
            backend.client.set_quota(d.unc, [{"sid": "S-1-22-1-0", "threshold": 1, "limit": 2}])
