"""A streaming replica of a `tests.servers.PostgresServer`, for replication-lag tests.

``pg_basebackup -R`` copies the primary (over the replication connection that initdb's
pg_hba.conf allows from 127.0.0.1) and writes ``standby.signal`` and ``primary_conninfo``;
the standby then streams from the primary on its own port. `pause_replay` and
`resume_replay` stop and restart applying WAL (``pg_wal_replay_pause``), which is how a test
makes the replica lag on demand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.servers import (
    POLL_INTERVAL,
    PostgresServer,
    ServerUnavailable,
    _stop_process,
    find_binary,
    free_port,
)

__all__ = ["StandbyServer"]

_CATCH_UP_TIMEOUT = 60.0


class StandbyServer(PostgresServer):
    """A hot standby streaming from ``primary`` (same superuser and password)."""

    prefix = "keyroll-pg-standby-"

    def __init__(self, primary: PostgresServer) -> None:
        super().__init__(primary.bin_dir)
        self.primary = primary
        self.password = primary.password
        self.basebackup = find_binary("pg_basebackup", "postgresql", (primary.bin_dir,),
                                      search_path=False)

    def start(self) -> StandbyServer:
        self._give_to_service_user(self.dir)
        env = {**os.environ, "PGPASSWORD": self.primary.password}
        done = subprocess.run(
            [str(self.basebackup), "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
             "--checkpoint=fast",
             "-d", self.primary.base_dsn() + f" user={self.primary.superuser}"],
            capture_output=True, cwd=self.dir, timeout=300, check=False, env=env,
            **self._run_as(),
        )
        if done.returncode != 0:
            raise ServerUnavailable("pg_basebackup failed: "
                                    + done.stderr.decode(errors="replace")[-2000:])
        self.data.chmod(0o700)
        for attempt in range(3):
            self.port = free_port()
            self._spawn([*self._argv(), "-c", "hot_standby=on", "-c", "hot_standby_feedback=on",
                         "-c", "wal_receiver_status_interval=1"])
            try:
                self._wait_ready()
            except ServerUnavailable:
                _stop_process(self.proc, signal.SIGKILL)
                if attempt == 2 or "could not bind" not in self.log_text():
                    raise
            else:
                self.wait_streaming()
                return self
        raise AssertionError("unreachable")

    def wait_streaming(self) -> None:
        """Until the primary lists this standby in ``pg_stat_replication``."""
        import psycopg

        deadline = time.monotonic() + _CATCH_UP_TIMEOUT
        for _ in range(int(_CATCH_UP_TIMEOUT / POLL_INTERVAL) + 1):
            with psycopg.connect(self.primary.superuser_dsn, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_replication "
                                   "WHERE state = 'streaming'").fetchone()
            if row is not None and row[0] > 0:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        raise ServerUnavailable("the standby did not start streaming")

    def pause_replay(self) -> None:
        import psycopg

        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        import psycopg

        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def replay_delay(self) -> float:
        """Seconds since the last transaction the standby replayed was committed (0 if it
        has replayed all it received): the replica's own view of its lag."""
        import psycopg

        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
                "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
            ).fetchone()
        return float(row[0] or 0) if row else 0.0
