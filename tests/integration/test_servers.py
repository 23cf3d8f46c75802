"""The server fixtures themselves: a missing binary fails loudly, servers stop cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration import conftest
from tests.servers import PgBouncerServer, PostgresServer, RedisServer, ServerUnavailable

pytestmark = pytest.mark.integration


def test_missing_binaries_fail_with_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match=r"'initdb' not found.*apt-get install -y "
                       r"postgresql"):
        PostgresServer(bin_dir=tmp_path)
    with pytest.raises(ServerUnavailable, match="apt-get install -y redis-server"):
        RedisServer(binary=tmp_path / "redis-server")
    postgres = PostgresServer()  # not started: only its folder exists
    try:
        with pytest.raises(ServerUnavailable, match="apt-get install -y pgbouncer"):
            PgBouncerServer(postgres, binary=tmp_path / "pgbouncer")
    finally:
        postgres.stop()
    assert not postgres.dir.exists()


def test_a_fixture_turns_a_missing_binary_into_a_failure_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y redis-server"):
        conftest._make(RedisServer, binary=tmp_path / "redis-server")


def test_stop_ends_our_process_and_removes_the_folder() -> None:
    server = RedisServer(aclfile=False).start()
    assert server.proc is not None
    pid, folder = server.proc.pid, server.dir
    server.stop()
    assert server.proc.returncode is not None
    assert not folder.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
