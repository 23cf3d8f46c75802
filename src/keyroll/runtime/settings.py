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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, SecretStr, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from keyroll.errors import SecretRejected
from keyroll.model import SecretValue
from keyroll.runtime.startup import check_value

__all__ = ["KeyrollSettings", "RequiredSecret", "secret_rule"]


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
