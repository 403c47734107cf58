"""Every ready experiment in deploy/experiments/ runs, in under a minute, and loses nothing
acknowledged; its control share sees no error. The SMB and SFTP ones get the address of the
session's private Samba and sshd through the RDBSS_EXP_* environment that
scripts/experiment-servers.py writes for a user. Slow (about 15 s each): ``-m slow``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conformance.backend_webdav import write_password_file
from tests.reliability.experiment_runs import ROOT, run_experiment
from tests.servers.fixtures import SambaServer, SshServer

LIBRARY = sorted((ROOT / "deploy" / "experiments").glob("*.toml"))
MINUTE = 60.0


def server_env(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if name.endswith("-smb"):
        smb: SambaServer = request.getfixturevalue("samba_server")
        return {
            "RDBSS_EXP_SMB_HOST": smb.host,
            "RDBSS_EXP_SMB_PORT": str(smb.port),
            "RDBSS_EXP_SMB_USER": smb.user,
            "RDBSS_EXP_SMB_PASSWORD_FILE": str(write_password_file(tmp_path / "pw", smb.password)),
            "RDBSS_EXP_SMB_SHARE": smb.share_name,
            "RDBSS_EXP_SMB_CONF": str(smb.conf_path),
        }
    if name.endswith("-sftp"):
        ssh: SshServer = request.getfixturevalue("ssh_server")
        share = ssh.root_dir / f"exp-{name}"
        share.mkdir(exist_ok=True)
        return {
            "RDBSS_EXP_SFTP_HOST": ssh.host,
            "RDBSS_EXP_SFTP_PORT": str(ssh.port),
            "RDBSS_EXP_SFTP_USER": ssh.user,
            "RDBSS_EXP_SFTP_KEY_FILE": str(ssh.client_key_path),
            "RDBSS_EXP_SFTP_KNOWN_HOSTS": str(ssh.known_hosts_path),
            "RDBSS_EXP_SFTP_ROOT": str(share),
        }
    return {}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_a_ready_experiment_runs_in_under_a_minute(
    path: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path.stem == "disk-full-local" and os.geteuid() != 0:
        pytest.skip("disk-full-local mounts a tmpfs: root only")
    for key, value in server_env(path.stem, request, tmp_path).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    proc = run_experiment(path, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["experiment"]["elapsed_s"] < MINUTE
    assert report["verdict"] == "OK"
    assert report["runner_errors"] == []
    assert all(step["ok"] for step in report["faults"]), report["faults"]
    for control in report["loads"][1:]:
        assert control["fail"] == control["info"] == 0, control["errors"]
    assert (out / "report.html").stat().st_size > 50_000
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith(f"# {path.stem}: ")  # documented at its top
