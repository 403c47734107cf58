"""Test-server fixtures: Samba, OpenSSH and wsgidav on loopback (see fixtures.py)."""
