#!/usr/bin/env python3
"""Start a private Samba and a private sshd on loopback for the SMB and SFTP experiments in
deploy/experiments/, and write the environment they read.

    python scripts/experiment-servers.py --env /tmp/exp-servers.env &     # as root
    . /tmp/exp-servers.env
    rdbss experiment run deploy/experiments/session-deleted-smb.toml --out report/

The servers are the test suite's (tests/servers/fixtures.py: free ports, private
configuration, a random password in a 0600 file); they run until SIGINT or SIGTERM, then stop.
Variables: RDBSS_EXP_SMB_HOST/PORT/USER/PASSWORD_FILE/SHARE/CONF and
RDBSS_EXP_SFTP_HOST/PORT/USER/KEY_FILE/KNOWN_HOSTS/ROOT.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.fixtures import SambaServer, SshServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="file to write the export lines into")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    base = Path(tempfile.mkdtemp(prefix="rdbss-exp-servers-"))
    with SambaServer(base / "samba") as smb, SshServer(base / "sshd") as ssh:
        password_file = base / "smb-password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(smb.password + "\n")
        (ssh.root_dir / "share").mkdir(parents=True, exist_ok=True)
        env = {
            "RDBSS_EXP_SMB_HOST": smb.host,
            "RDBSS_EXP_SMB_PORT": str(smb.port),
            "RDBSS_EXP_SMB_USER": smb.user,
            "RDBSS_EXP_SMB_PASSWORD_FILE": str(password_file),
            "RDBSS_EXP_SMB_SHARE": smb.share_name,
            "RDBSS_EXP_SMB_CONF": str(smb.conf_path),
            "RDBSS_EXP_SFTP_HOST": ssh.host,
            "RDBSS_EXP_SFTP_PORT": str(ssh.port),
            "RDBSS_EXP_SFTP_USER": ssh.user,
            "RDBSS_EXP_SFTP_KEY_FILE": str(ssh.client_key_path),
            "RDBSS_EXP_SFTP_KNOWN_HOSTS": str(ssh.known_hosts_path),
            "RDBSS_EXP_SFTP_ROOT": str(ssh.root_dir / "share"),
        }
        text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        Path(args.env).write_text(text)
        print(f"servers up; environment in {args.env}", file=sys.stderr, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
