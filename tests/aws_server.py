"""moto in server mode (``moto_server``) on a free loopback port: the IAM and STS query APIs
that stand in for AWS in the ``aws-iam`` tests. moto enforces IAM's two-keys-per-user quota,
answers ``sts get-caller-identity`` with the user an access key belongs to, and records each
key's last use when a request is signed with it (``GetAccessKeyLastUsed``).

It is a real HTTP server in its own process, started once per session and stopped by its PID.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.servers import ServerUnavailable, _Server, _stop_process, _wait_port, free_port

__all__ = ["MotoServer"]


class MotoServer(_Server):
    """``moto_server -H 127.0.0.1 -p PORT``; ``url`` is its endpoint for every service."""

    prefix = "keyroll-moto-"

    def _run_as(self) -> dict[str, Any]:
        return {}  # moto needs no unprivileged user (nothing in it refuses root)

    def start(self) -> MotoServer:
        binary = Path(sys.executable).with_name("moto_server")
        if not binary.exists():
            raise ServerUnavailable("moto_server not found next to the venv's python: "
                                    "`make venv` installs moto[server] from the dev group")
        self.port = free_port()
        self._spawn([str(binary), "-H", "127.0.0.1", "-p", str(self.port)])
        assert self.proc is not None
        _wait_port(self.port, self.proc, "moto_server", self.log_path)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        import signal

        _stop_process(self.proc, signal.SIGTERM)
        self._cleanup()
