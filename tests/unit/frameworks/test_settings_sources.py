"""pydantic-settings sources: secrets from the keyroll store, and fields that are key sources."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from keyroll.errors import SecretRejected
from keyroll.model import SecretRef
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import LazyKeySource, StoreKeySource
from keyroll.runtime.settings import EnvKeySources, KeyrollSettings, KeyrollStoreSource, KeySourceSetting
from keyroll.stores.base import Store
from tests.leaks import assert_no_leak
from tests.unit.conftest import World


def _settings(store: Store | str, environment: str = "dev") -> type[KeyrollSettings]:
    class Settings(KeyrollSettings):
        jwt_access: KeySourceSetting
        webhook: SecretStr
        api_token: SecretStr

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            source = KeyrollStoreSource(settings_cls, store, environment, names={"api_token": "api"},
                                        refresh_interval=0)
            return init_settings, source, EnvKeySources(settings_cls), env_settings

    return Settings


def test_settings_read_the_store_and_hand_out_a_refreshing_source(world: World) -> None:
    ref = world.seed("jwt-access")
    world.seed("webhook")
    world.seed("api")
    settings: Any = _settings(world.store)()
    assert isinstance(settings.jwt_access, StoreKeySource)
    same = settings.webhook.get_secret_value() == world.store.read_value(
        SecretRef("dev", "webhook"), 1).reveal()
    assert same
    ring = JWTKeyRing(settings.jwt_access, clock=lambda: world.clock().timestamp())
    old = ring.sign({"sub": "u"}, ttl=timedelta(minutes=5))
    engine = world.engine()
    engine.run(engine.start("jwt-access", "dev").id)
    assert ring.verify(old)["sub"] == "u"  # the ring the settings built follows the rotation
    assert ring.current_kid == world.store.list_versions(ref)[1].kid
    values = [world.store.read_value(r, 1).reveal() for r in world.store.list_secrets()]
    assert_no_leak([repr(settings), str(settings)], values)


def test_a_store_url_opens_the_store(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    world.seed("jwt-access")
    world.seed("webhook")
    world.seed("api")
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(world.key).decode())
    settings: Any = _settings(f"sqlite:{world.store.path}")()
    assert settings.jwt_access.snapshot().current.version == 1


def test_missing_secrets_are_named_never_shown(world: World) -> None:
    world.seed("jwt-access")
    with pytest.raises(SecretRejected) as caught:
        _settings(world.store)()
    assert "WEBHOOK" in str(caught.value) and "API_TOKEN" in str(caught.value)


def test_env_key_sources_are_lazy_and_follow_the_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    class Settings(KeyrollSettings):
        jwt_secret_key_current: KeySourceSetting

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, EnvKeySources(settings_cls, layout="seed-003")

    settings = Settings()  # no key yet: nothing is read
    assert isinstance(settings.jwt_secret_key_current, LazyKeySource)
    current, previous = secrets.token_urlsafe(40), secrets.token_urlsafe(40)
    monkeypatch.setenv("JWT_SECRET_KEY_CURRENT", current)
    monkeypatch.setenv("JWT_SECRET_KEY_PREVIOUS", previous)
    keys = settings.jwt_secret_key_current.snapshot()
    assert [k.origin for k in keys.keys] == ["env:JWT_SECRET_KEY_CURRENT", "env:JWT_SECRET_KEY_PREVIOUS"]
