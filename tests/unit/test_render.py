"""`keyroll.render`: the env-var layout and the .env / JSON / Kubernetes Secret spellings."""

from __future__ import annotations

import base64
import json

import pytest

from keyroll.errors import UsageError
from keyroll.model import Label, SecretValue
from keyroll.render import check_k8s_name, check_template, collect, render, split_dsn
from tests.unit.conftest import World


def _names(world: World, env: str = "dev") -> list[str]:
    return [e.name for e in collect(world.store, world.inventory, env)]


def test_only_secrets_with_a_current_version_are_collected(world: World) -> None:
    assert _names(world) == []
    world.seed("api")
    assert _names(world) == ["API_KEY"]


def test_key_kinds_carry_their_kid_and_the_previous_version(world: World) -> None:
    ref = world.seed("jwt-access")
    assert _names(world) == ["JWT_SECRET", "JWT_SECRET_KID"]
    old = world.store.get_labels(ref)[Label.CURRENT]
    new = world.store.put_version(ref, SecretValue("n" * 40))
    world.store.set_labels(ref, expected={Label.CURRENT: old},
                           new={Label.CURRENT: new.number, Label.PREVIOUS: old})
    names = _names(world)
    assert "JWT_SECRET_PREVIOUS" in names and "JWT_SECRET_PREVIOUS_KID" in names
    entries = {e.name: e.value for e in collect(world.store, world.inventory, "dev")}
    assert entries["JWT_SECRET_KID"].reveal() == new.kid_hex


def test_a_pending_version_is_rendered_as_next(world: World) -> None:
    ref = world.seed("field")
    pending = world.store.put_version(ref, SecretValue("p" * 44))
    world.store.set_labels(ref, expected={Label.PENDING: None}, new={Label.PENDING: pending.number})
    names = _names(world)
    assert "FIELD_ENCRYPTION_KEY_NEXT" in names and "FIELD_ENCRYPTION_KEY_NEXT_KID" in names


def test_the_three_formats_hold_the_same_values(world: World) -> None:
    world.seed("api", value="plain-value-1234")
    entries = collect(world.store, world.inventory, "dev")
    assert render(entries, "dotenv") == "API_KEY=plain-value-1234\n"
    assert json.loads(render(entries, "json")) == {"API_KEY": "plain-value-1234"}
    k8s = render(entries, "k8s", name="app-secrets")
    assert "kind: Secret" in k8s and "  name: app-secrets" in k8s
    assert f"  API_KEY: {base64.b64encode(b'plain-value-1234').decode()}" in k8s
    with pytest.raises(UsageError, match="unknown format"):
        render(entries, "yaml")


@pytest.mark.parametrize("name", ["app-secrets", "a.b-c", "x" * 253])
def test_k8s_names_follow_rfc_1123(name: str) -> None:
    assert check_k8s_name(name) == name


@pytest.mark.parametrize("name", ["App", "-a", "a-", "a\nnamespace: x", "x" * 254, ""])
def test_k8s_names_that_could_inject_yaml_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="Kubernetes Secret name"):
        check_k8s_name(name)


@pytest.mark.parametrize(("template", "problem"), [
    ("postgresql://{role}:{password}@db/app", None),
    ("redis://:{password}@cache", None),
    ("postgresql://{user}@db", "unknown placeholder"),
    ("postgresql://{role}@db", "must contain {password}"),
    ("postgresql://{password@db", "unbalanced braces"),
    (42, "must be a string"),
])
def test_templates_are_checked(template: object, problem: str | None) -> None:
    found = check_template(template)
    assert found == problem if problem is None else problem in (found or "")


def test_split_dsn_finds_the_password_and_never_repeats_a_bad_url() -> None:
    assert split_dsn("postgresql://app:s3cret@db/app") == ("app", "s3cret")
    # percent-encoded (as a URL must spell $ " \\ ' @ :): the password itself is returned
    assert split_dsn("mysql://app:p%24w%22q%5Cr%27%40%3A@db/app") == ("app", "p$w\"q\\r'@:")
    assert split_dsn("amqp://app%5Fa:pa%24s%22%5C%25@mq:5672/%2F") == ("app_a", 'pa$s"\\%')
    assert split_dsn("not a url") is None
    with pytest.raises(UsageError) as info:
        split_dsn("postgresql://app:planted[pw@db/app")
    assert "planted" not in str(info.value)
