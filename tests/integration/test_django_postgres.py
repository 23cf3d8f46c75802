"""keyroll.django on the PostgreSQL fixture: sessions, the encrypted field and
``keyroll_reencrypt`` through full rotations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import FreshDatabase
from tests.unit.conftest import World, world
from tests.unit.frameworks.test_django import run_django_rotation

__all__ = ["world"]

pytestmark = pytest.mark.integration


def test_django_on_postgres_keeps_a_user_signed_in(world: World, fresh_db: FreshDatabase,
                                                   tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(fresh_db.dsn)
    database = {"ENGINE": "django.db.backends.postgresql", "NAME": params["dbname"],
                "USER": params["user"], "PASSWORD": params.get("password", ""),
                "HOST": params["host"], "PORT": str(params["port"])}
    run_django_rotation(world, database, tmp_path / "site")
