"""Test-server fixtures: Samba, OpenSSH and wsgidav on loopback (rdbss.testing.servers)."""
