"""Options of the ``rabbitmq-user`` strategy and the URLs it reads: one-line errors naming the
class and the field, credentials never echoed, a missing admin env var stops the rotation at
plan with nothing changed. No broker is needed for any of this (the integration tests in
``tests/integration/test_rabbitmq_user_strategy.py`` run the real one)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from keyroll.errors import RotationRefused, UsageError
from keyroll.generate import generate
from keyroll.inventory import SecretClass, parse_inventory
from keyroll.model import Kind, SecretValue
from keyroll.rotation.strategies import strategy_for
from keyroll.rotation.strategies.rabbitmq_user import rabbitmq_options, rabbitmq_target
from keyroll.targets.rabbitmq import (
    AmqpEndpoint,
    UserGrants,
    parse_admin_url,
    parse_amqp_url,
    password_hash,
)
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text

MQ: dict[str, Any] = {"admin_url_env": "MQ_ADMIN", "user": "app"}


def _cls(options: dict[str, Any]) -> SecretClass:
    text = inventory_text(class_toml("x", "rabbitmq-user", "AMQP_URL", options, {"min": "1h"}))
    return parse_inventory(text).classes["x"]


@pytest.mark.parametrize(("change", "field"), [
    ({"admin_url_env": "http://admin:s3cret-pw@mq:15672"}, "admin_url_env"),
    ({"admin_url_env": None}, "admin_url_env"),
    ({"user": None}, "user"),
    ({"user": "has space"}, "user"),
    ({"user": "x" * 256}, "user"),
    ({"users": ["only_one"]}, "users"),
    ({"users": ["a", "a"]}, "users"),
    ({"users": ["a\x00", "b"]}, "users"),
    ({"amqp_url": "amqp://app:s3cret-pw@mq:5672/%2F"}, "amqp_url"),
    ({"amqp_url": "http://mq:5672/"}, "amqp_url"),
    ({"amqp_url": "amqp://mq:5672/a/b"}, "amqp_url"),
    ({"app_url": "amqp://{role}@mq/"}, "app_url"),
    ({"vhost": "/"}, "vhost"),
])
def test_rabbitmq_options_are_checked(change: dict[str, Any], field: str) -> None:
    options = {k: v for k, v in {**MQ, **change}.items() if v is not None}
    with pytest.raises(UsageError) as info:
        rabbitmq_options(_cls(options))
    message = str(info.value)
    assert message.startswith(f"class 'x': options.{field}:"), message
    assert "\n" not in message
    assert "s3cret-pw" not in message


def test_rabbitmq_defaults_and_the_registered_strategy() -> None:
    cls = _cls({**MQ, "amqp_url": "amqps://mq.internal/orders%2Fprod"})
    opts = rabbitmq_options(cls)
    assert opts.users == ("app_a", "app_b") and opts.other("app_a") == "app_b"
    assert opts.amqp == AmqpEndpoint("mq.internal", 5671, "orders/prod", tls=True)
    assert cls.kind is Kind.RABBITMQ_USER and cls.generator is not None
    strategy = strategy_for(Kind.RABBITMQ_USER)
    assert strategy.kind is Kind.RABBITMQ_USER
    strategy.validate(cls)


def test_amqp_url_forms() -> None:
    assert parse_amqp_url("amqp://127.0.0.1") == AmqpEndpoint("127.0.0.1", 5672, "/", False)
    assert parse_amqp_url("amqp://h:1234/%2F") == AmqpEndpoint("h", 1234, "/", False)
    assert parse_amqp_url("amqp://h/app") == AmqpEndpoint("h", 5672, "app", False)
    assert str(AmqpEndpoint("h", 5672, "/", False)) == "amqp://h:5672/%2F"
    for bad in ("amqp://u@h/", "amqp://:pw@h/", "amqp://h:notaport/", "amqp://h/?x=1", "h:5672"):
        assert parse_amqp_url(bad) is None, bad


def test_admin_url_forms_decode_the_password() -> None:
    base, user, password = parse_admin_url("https://ad%40min:pa%24s%22%5C%25@mq:15671/api-root/")
    assert (base, user, password.reveal()) == ("https://mq:15671/api-root", "ad@min", 'pa$s"\\%')
    assert parse_admin_url("http://admin:pw@[::1]:15672")[0] == "http://[::1]:15672"  # type: ignore[index]
    for bad in ("http://mq:15672", "http://admin@mq:15672", "amqp://a:b@mq", "http://a:b@:1",
                "http://a:b@mq:99999", "http://a:b@mq/?token=1"):
        assert parse_admin_url(bad) is None, bad


@pytest.mark.parametrize("url", ["http://u:s3cret-pw@h:notaport", "redis://u:s3cret-pw@h:6379",
                                 "http://u:s3cret-pw@"])
def test_a_malformed_admin_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(RotationRefused) as info:
        rabbitmq_target(url, None, what="env var MQ_ADMIN")
    assert "s3cret-pw" not in str(info.value) and "MQ_ADMIN" in str(info.value)


def test_the_default_amqp_endpoint_is_the_admin_host() -> None:
    target = rabbitmq_target("http://admin:pw@mq.internal:15672", None, what="x")
    assert target.amqp == AmqpEndpoint("mq.internal", 5672, "/", tls=False)
    assert "pw" not in repr(target)


def test_password_hash_is_rabbitmqs_salted_form() -> None:
    # rabbit_password: base64(salt ++ H(salt ++ utf8(password))), 4-byte salt
    salt = bytes.fromhex("908dc60a")
    password = SecretValue('pa$s"\\%w0rd')
    expected = base64.b64encode(salt + hashlib.sha256(salt + password.reveal_bytes()).digest())
    assert password_hash(password, salt=salt) == expected.decode()
    sha512 = password_hash(password, "rabbit_password_hashing_sha512", salt=salt)
    assert base64.b64decode(sha512) == salt + hashlib.sha512(salt + password.reveal_bytes()).digest()
    assert password_hash(password) != password_hash(password)  # a fresh salt each time


def test_grants_diff_names_every_difference() -> None:
    a = UserGrants(("monitoring",), (("/", ".*", ".*", ".*"), ("app", "", "x", ".*")),
                   (("/", "amq.topic", "^a", ".*"),))
    assert a.diff(a, "app_a", "app_b") == []
    b = UserGrants((), (("/", ".*", ".*", ".*"), ("app", "", "y", ".*")), (),
                   (("max-connections", 10),))
    lines = a.diff(b, "app_a", "app_b")
    assert lines == [
        "tags: ['monitoring'] on 'app_a', [] on 'app_b'",
        "limits: {} on 'app_a', {'max-connections': 10} on 'app_b'",
        "permissions ('app', '', 'x', '.*') only on 'app_a'",
        "permissions ('app', '', 'y', '.*') only on 'app_b'",
        "topic permissions ('/', 'amq.topic', '^a', '.*') only on 'app_a'",
    ]


def test_a_missing_admin_env_var_stops_the_rotation_at_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MQ_ADMIN", raising=False)
    world = EngineWorld.create(tmp_path, inventory_text(
        class_toml("x", "rabbitmq-user", "AMQP_URL", MQ, {"min": "1h"})))
    try:
        ref = world.seed("x", generate("password-32"), role=None)
        before = world.store.get_labels(ref)
        record = world.rotate("x")
        assert record.state == "rolled-back"
        assert record.body.error.step == "plan"
        assert "env var MQ_ADMIN" in record.body.error.message
        assert world.store.get_labels(ref) == before
        assert len(world.store.list_versions(ref)) == 1
    finally:
        world.close()
