"""`keyroll.urls`: one ``sqlite:`` rule (SQLAlchemy's) for the store and for re-encryption."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyroll.errors import UsageError
from keyroll.reencrypt.sqlite import sqlite_file
from keyroll.stores import open_store, sqlite_path
from keyroll.urls import sqlite_url_path

RULE = [
    ("sqlite:///app.db", Path("app.db")),
    ("sqlite:////srv/app/app.db", Path("/srv/app/app.db")),
    ("sqlite:data/app.db", Path("data/app.db")),
    ("sqlite:/srv/app.db", Path("/srv/app.db")),
    ("sqlite+pysqlite:///app.db?timeout=5", Path("app.db")),
]


@pytest.mark.parametrize(("url", "path"), RULE)
def test_both_callers_read_a_url_the_same_way(url: str, path: Path) -> None:
    assert sqlite_url_path(url) == path
    assert sqlite_file(url) == path
    assert sqlite_path(url) == path


def test_the_store_resolves_relative_paths_against_the_inventory(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///store.db", tmp_path) == tmp_path / "store.db"
    assert sqlite_path("sqlite:store.db", tmp_path) == tmp_path / "store.db"
    assert sqlite_path(f"sqlite:///{tmp_path}/store.db", Path("/elsewhere")) == tmp_path / "store.db"


def test_the_store_opens_a_three_slash_url_relative_to_base(tmp_path: Path) -> None:
    env = {"KEYROLL_MASTER_KEY": "A" * 43 + "="}
    with open_store("sqlite:///nested/store.db", base=tmp_path, environ=env) as store:
        assert store.list_secrets() == []
    assert (tmp_path / "nested" / "store.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:", "sqlite::memory:",
                                 "sqlite://host/app.db"])
def test_no_file_or_a_host_is_refused_by_both(url: str) -> None:
    for read in (sqlite_url_path, sqlite_file, sqlite_path):
        with pytest.raises(UsageError, match="sqlite"):
            read(url)
