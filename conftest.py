"""Root pytest configuration: the real-server fixtures (Samba, sshd, wsgidav) for every test."""

pytest_plugins = ["rdbss.testing.servers"]
