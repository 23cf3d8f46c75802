"""pydantic-settings integration of startup validation (`keyroll.runtime.startup`).

::

    from keyroll.runtime.settings import KeyrollSettings, RequiredSecret, secret_rule

    class Settings(KeyrollSettings):
        jwt_secret: RequiredSecret                                   # 32+ chars, real key
        field_encryption_key: Annotated[SecretStr, secret_rule(min_length=44)]

    settings = Settings()   # SecretRejected names the variable and the rule, never the value

`KeyrollSettings` sets ``hide_input_in_errors`` (a pydantic ValidationError otherwise prints
the raw input, secrets included) and turns validation errors into one `SecretRejected`.
Separate from `startup` because importing pydantic-settings costs a quarter of a second.

Secrets from the keyroll store (or OpenBao), and fields that are key sources::

    class Settings(KeyrollSettings):
        jwt_access: KeySourceSetting           # a refreshing StoreKeySource(prod/jwt-access)
        database_password: SecretStr           # the current value of prod/database-password

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            store = KeyrollStoreSource(settings_cls, "sqlite:/srv/keyroll/store.db", "prod")
            return init_settings, store, EnvKeySources(settings_cls), env_settings

`KeyrollStoreSource` maps a field to the class of the same name (``jwt_access`` →
``jwt-access``; ``names=`` for others). A `KeySourceSetting` field gets a `StoreKeySource` (the
app builds its `JWTKeyRing` on it and follows rotations without restart); any other field gets
the current value. `EnvKeySources` gives the `KeySourceSetting` fields nothing else provided a
lazy `EnvKeySource.from_layout` on the field's upper-cased name (``JWT_ACCESS`` + ``_PREVIOUS``
…), read on first use. Put both before ``env_settings``: the plain env source would hand a
`KeySourceSetting` field a string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, InstanceOf, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keyroll.errors import SecretRejected
from keyroll.layout import DEFAULT_LAYOUT
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.keysource import EnvKeySource, KeySource, LazyKeySource, StoreKeySource
from keyroll.runtime.startup import check_value
from keyroll.stores.base import Store

__all__ = [
    "EnvKeySources",
    "KeySourceSetting",
    "KeyrollSettings",
    "KeyrollStoreSource",
    "RequiredSecret",
    "secret_rule",
]

#: A settings field holding a key source (rings are built on it), not a string.
KeySourceSetting = InstanceOf[KeySource]


def _wants_key_source(field: FieldInfo) -> bool:
    annotation = field.annotation
    return isinstance(annotation, type) and issubclass(annotation, KeySource)


class KeyrollStoreSource(PydanticBaseSettingsSource):
    """A pydantic-settings source reading one environment's secrets from a keyroll store.

    Args:
        settings_cls: the settings model.
        store: a `Store`, or a store URL (``sqlite:…``, ``openbao://…``) opened with
            `keyroll.stores.open_store` (the master key or OpenBao token from the environment).
        environment: the keyroll environment (``prod``).
        names: field name → class name, where the class is not the field's name with ``-``
            for ``_``.
        refresh_interval: of the `StoreKeySource` given to `KeySourceSetting` fields.

    A secret the store does not hold is left to the other sources (and is then reported as
    missing by `KeyrollSettings`, by variable name).
    """

    def __init__(self, settings_cls: type[BaseSettings], store: Store | str, environment: str,
                 *, names: Mapping[str, str] | None = None, refresh_interval: float = 5.0) -> None:
        super().__init__(settings_cls)
        if isinstance(store, str):
            from keyroll.stores import open_store

            store = open_store(store, create=False)
        self.store = store
        self.environment = environment
        self.names = dict(names or {})
        self.refresh_interval = refresh_interval

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        ref = SecretRef(self.environment, self.names.get(field_name, field_name.replace("_", "-")))
        labels = self.store.get_labels(ref)
        if Label.CURRENT not in labels:
            return None, field_name, False
        if _wants_key_source(field):
            return StoreKeySource(self.store, ref, refresh_interval=self.refresh_interval), \
                field_name, False
        return self.store.read_value(ref, labels[Label.CURRENT]).reveal(), field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


class EnvKeySources(PydanticBaseSettingsSource):
    """Gives each `KeySourceSetting` field a lazy `EnvKeySource.from_layout` on its upper-cased
    name (its ``validation_alias`` if it is a string), in ``layout`` (`keyroll.layout`)."""

    def __init__(self, settings_cls: type[BaseSettings], *, layout: str = DEFAULT_LAYOUT) -> None:
        super().__init__(settings_cls)
        self.layout = layout

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not _wants_key_source(field):
            return None, field_name, False
        alias = field.validation_alias
        var = alias if isinstance(alias, str) else field_name.upper()
        layout = self.layout

        def build() -> KeySource:
            return EnvKeySource.from_layout(var, layout)

        return LazyKeySource(build, name=f"env:{var}"), field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


def secret_rule(*, min_length: int = 32, min_entropy_bits: float = 96.0) -> AfterValidator:
    """A validator for a ``SecretStr`` field applying `startup.check_value`.

    The error carries the rule only; `KeyrollSettings` prefixes the variable name and raises
    one `SecretRejected` for every failing field. (In a plain ``BaseSettings`` the error is a
    pydantic ``ValidationError`` whose input shows as ``SecretStr('**********')``.)
    """

    def check(value: SecretStr) -> SecretStr:
        problems = check_value(
            SecretValue(value.get_secret_value()),
            min_length=min_length,
            min_entropy_bits=min_entropy_bits,
        )
        if problems:
            raise PydanticCustomError("keyroll_secret", problems[0])
        return value

    checker: Callable[[SecretStr], SecretStr] = check
    return AfterValidator(checker)


#: A required secret of 32+ characters that is not a placeholder nor low-entropy.
RequiredSecret = Annotated[SecretStr, secret_rule()]


class KeyrollSettings(BaseSettings):
    """Base for an app's settings: validation errors never echo input, and end in one
    `SecretRejected` listing every missing or malformed variable."""

    model_config = SettingsConfigDict(hide_input_in_errors=True, extra="ignore")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            lines = []
            for err in exc.errors(include_input=False, include_url=False):
                name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
                sep = " " if err["type"] == "keyroll_secret" else ": "
                lines.append(f"{name}{sep}{err['msg']}")
            raise SecretRejected("refusing to start:\n  " + "\n  ".join(lines)) from None
