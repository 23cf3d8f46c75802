"""``keyroll scan --dsn … --query``: seed 000's red line (no secret in the SystemConfig table),
on a real PostgreSQL table holding every spelling of every version among look-alikes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from keyroll.stores import open_store
from tests.integration.conftest import FreshDatabase
from tests.leaks import assert_no_leak
from tests.scan_corpus import build_store, noise, spellings

pytestmark = pytest.mark.integration
KEYROLL = str(Path(sys.executable).parent / "keyroll")


def test_a_table_is_scanned_row_by_row_with_full_recall_and_no_false_positive(
        fresh_db: FreshDatabase, tmp_path: Path) -> None:
    import psycopg

    env = {**os.environ, "KEYROLL_MASTER_KEY": "", "SCAN_DSN": fresh_db.dsn}
    env.pop("KEYROLL_CONFIG", None)
    subprocess.run([KEYROLL, "init", str(tmp_path)], env=env, check=True, capture_output=True)
    with open_store(f"sqlite:{tmp_path / '.keyroll' / 'store.db'}", create=False) as store:
        values = build_store(store)
    rng = random.Random(5)
    filler = noise(rng, values)
    expected: set[tuple[str, str, int]] = set()
    rows: list[tuple[str, str | None, bytes | None]] = []
    for value in values:
        stem = f"{value.name}.v{value.version}"
        for form, lines in spellings(value.text).items():
            rows.append((f"{stem}.{form}", "\n".join(lines), None))
        rows.append((f"{stem}.bytes", None, value.text.encode()))
        expected |= {(key, value.name, value.version) for key, _, _ in rows
                     if key.startswith(stem + ".")}
    rows += [(f"noise.{i}", next(filler), os.urandom(24)) for i in range(3000)]
    rng.shuffle(rows)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE system_config (key text PRIMARY KEY, value text, raw bytea)")
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO system_config VALUES (%s, %s, %s)", rows)
    done = subprocess.run(
        [KEYROLL, "scan", "--json", "--dsn", "env:SCAN_DSN", "--query",
         "SELECT key, value, raw FROM system_config ORDER BY key COLLATE \"C\""],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 1, done.stderr
    by_row = sorted(key for key, _, _ in rows)  # the query's order (bytewise, COLLATE "C")
    got = {(by_row[int(f["path"].split()[2]) - 1], f["class"], f["version"])
           for f in json.loads(done.stdout)["findings"]}
    missed = expected - got
    assert not missed, f"recall below 100%: {sorted(k for k, _, _ in missed)[:10]}"
    assert got == expected, f"false positives: {sorted(got - expected)[:10]}"
    assert_no_leak([done.stdout, done.stderr], [v.text for v in values])
    assert fresh_db.dsn.split("password=")[-1] not in done.stderr


def test_a_bad_query_is_one_line_exit_2_without_the_password(
        fresh_db: FreshDatabase, tmp_path: Path) -> None:
    env = {**os.environ, "KEYROLL_MASTER_KEY": "", "SCAN_DSN": fresh_db.dsn}
    subprocess.run([KEYROLL, "init", str(tmp_path)], env=env, check=True, capture_output=True)
    done = subprocess.run([KEYROLL, "scan", "--dsn", "env:SCAN_DSN", "--query", "SELEC nothing"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
