"""Serve one folder over WebDAV with wsgidav under cheroot, in its own process.

Usage: ``python wsgidav_runner.py CONFIG.json``, where the JSON object has ``root`` (folder to
serve), ``host``, ``port``, ``user``, ``password`` and optionally ``default_to_digest`` (bool),
``numthreads`` (int) and ``request_log`` (bool: one log line per request, method, path and
range, for tests that count requests). Auth is wsgidav's simple_dc with Basic and Digest
accepted. Logs go to stdout. SIGTERM or SIGINT stops the server cleanly; the fixture SIGKILLs
it if that hangs.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any


def build_app(cfg: dict[str, Any]) -> Any:
    from wsgidav.wsgidav_app import WsgiDAVApp  # type: ignore[import-untyped,unused-ignore]

    return WsgiDAVApp(
        {
            "host": cfg["host"],
            "port": int(cfg["port"]),
            "provider_mapping": {"/": str(cfg["root"])},
            "simple_dc": {"user_mapping": {"*": {cfg["user"]: {"password": cfg["password"]}}}},
            "http_authenticator": {
                "domain_controller": None,  # None means simple_dc
                "accept_basic": True,
                "accept_digest": True,
                "default_to_digest": bool(cfg.get("default_to_digest", False)),
            },
            "dir_browser": {"enable": False},
            "lock_storage": True,
            "property_manager": True,
            "verbose": 3 if cfg.get("request_log") else 2,
            "logging": {"enable": True, "enable_loggers": []},
        }
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[1]).read_text())
    host, port = str(cfg["host"]), int(cfg["port"])
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"refusing to listen on non-loopback host {host!r}", file=sys.stderr)
        return 2

    from cheroot import wsgi

    server = wsgi.Server(
        (host, port),
        build_app(cfg),
        numthreads=int(cfg.get("numthreads", 8)),
        request_queue_size=64,
    )

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.prepare()  # binds now; an address already in use raises here (non-zero exit)
    print(f"wsgidav_runner: serving {cfg['root']} on http://{host}:{port}/", flush=True)
    try:
        server.serve()
    except SystemExit:
        pass
    finally:
        server.stop()
    print("wsgidav_runner: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
