"""Options of the ``postgres-role`` and ``redis-acl`` strategies: one-line errors naming the
class and the field, URLs from env vars never echoed, and a missing env var stops a rotation at
plan with nothing changed. No server is needed for any of this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyroll.errors import RotationRefused, UsageError
from keyroll.generate import generate
from keyroll.inventory import SecretClass, parse_inventory
from keyroll.model import Kind
from keyroll.rotation.strategies import strategy_for
from keyroll.rotation.strategies.postgres_role import role_options
from keyroll.rotation.strategies.redis_acl import acl_options, redis_target
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text

PG: dict[str, Any] = {"admin_dsn_env": "PG_ADMIN", "group_role": "app"}
REDIS: dict[str, Any] = {"admin_url_env": "REDIS_ADMIN", "user": "app"}


def _cls(kind: str, options: dict[str, Any]) -> SecretClass:
    text = inventory_text(class_toml("x", kind, "X_VAR", options, {"min": "1h"}))
    return parse_inventory(text).classes["x"]


@pytest.mark.parametrize(("change", "field"), [
    ({"retire": "breakglass"}, "retire"),
    ({"admin_dsn_env": "postgresql://u:p@h/db"}, "admin_dsn_env"),
    ({"admin_dsn_env": None}, "admin_dsn_env"),
    ({"group_role": ""}, "group_role"),
    ({"group_role": "x" * 64}, "group_role"),
    ({"login_roles": ["only_one"]}, "login_roles"),
    ({"login_roles": ["app", "app_b"]}, "login_roles"),
    ({"login_roles": ["a\x00", "b"]}, "login_roles"),
    ({"pgbouncer_auth_file": "/etc/pgbouncer/userlist.txt"}, "pgbouncer_admin_url_env"),
    ({"pgbouncer_admin_url_env": "PGB"}, "pgbouncer_auth_file"),
    ({"probe_table": "a.b.c"}, "probe_table"),
    ({"app_dsn": "postgresql://{role}@db/app"}, "app_dsn"),
    ({"grup_role": "typo"}, "grup_role"),
])
def test_postgres_role_options_are_checked(change: dict[str, Any], field: str) -> None:
    options = {k: v for k, v in {**PG, **change}.items() if v is not None}
    with pytest.raises(UsageError) as info:
        role_options(_cls("postgres-role", options))
    message = str(info.value)
    assert message.startswith(f"class 'x': options.{field}:"), message
    assert "\n" not in message
    assert "postgresql://u:p@h" not in message


def test_postgres_role_defaults() -> None:
    opts = role_options(_cls("postgres-role", {**PG, "retire": "drop"}))
    assert opts.layout.group == "app"
    assert opts.layout.logins == ("app_a", "app_b")
    assert opts.retire.value == "drop"
    quoted = role_options(_cls("postgres-role", {**PG, "group_role": 'a"; DROP ROLE x; --'}))
    assert quoted.layout.logins[0] == 'a"; DROP ROLE x; --_a'  # names are data, never SQL


@pytest.mark.parametrize(("change", "field"), [
    ({"mode": "single"}, "mode"),
    ({"admin_url_env": "redis://:pw@h"}, "admin_url_env"),
    ({"user": "has space"}, "user"),
    ({"users": ["a", "b"]}, "users"),  # dual-password has one user
    ({"mode": "alternating-users", "users": ["a", "a"]}, "users"),
    ({"mode": "alternating-users", "rules": "~*"}, "rules"),
    ({"app_url": "redis://{role}@h"}, "app_url"),
    ({"passwords": 2}, "passwords"),
])
def test_redis_acl_options_are_checked(change: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageError) as info:
        acl_options(_cls("redis-acl", {**REDIS, **change}))
    message = str(info.value)
    assert message.startswith(f"class 'x': options.{field}:"), message
    assert ":pw@" not in message


@pytest.mark.parametrize("url", ["http://u:s3cret-pw@h:1", "redis://u:s3cret-pw@h:notaport",
                                 "redis://u:s3cret-pw@:6379"])
def test_a_malformed_admin_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(RotationRefused) as info:
        redis_target(url)
    assert "s3cret-pw" not in str(info.value)


def test_redis_url_forms() -> None:
    plain = redis_target("redis://:pw@127.0.0.1")
    assert (plain.admin_user, plain.port) == ("default", 6379)
    named = redis_target("rediss://ad%40min:p%3Aw@10.0.0.1:6380")
    assert (named.admin_user, named.host, named.port) == ("ad@min", "10.0.0.1", 6380)


def test_the_example_inventory_tables_validate() -> None:
    text = (Path(__file__).resolve().parents[3] / "src/keyroll/example_inventory.toml").read_text()
    inventory = parse_inventory(text)
    for name in ("database", "redis"):
        cls = inventory.classes[name]
        assert cls.kind in (Kind.POSTGRES_ROLE, Kind.REDIS_ACL)
        strategy_for(cls.kind).validate(cls)


@pytest.mark.parametrize(("kind", "options", "var"), [
    ("postgres-role", PG, "PG_ADMIN"),
    ("redis-acl", REDIS, "REDIS_ADMIN"),
])
def test_a_missing_admin_env_var_stops_the_rotation_at_plan(
    kind: str, options: dict[str, Any], var: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(var, raising=False)
    world = EngineWorld.create(tmp_path, inventory_text(
        class_toml("x", kind, "X_VAR", options, {"min": "1h"})))
    try:
        ref = world.seed("x", generate("password-32"), role=None)
        before = world.store.get_labels(ref)
        record = world.rotate("x")
        assert record.state == "rolled-back"
        assert record.body.error.step == "plan"
        assert f"env var {var}" in record.body.error.message
        assert world.store.get_labels(ref) == before
        assert len(world.store.list_versions(ref)) == 1
    finally:
        world.close()
