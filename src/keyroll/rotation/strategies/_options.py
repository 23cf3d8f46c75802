"""Checks shared by the strategies that read kind-specific ``options`` from keyroll.toml.

Every error is one line naming the class and the option, and never echoes a value that could be
a credential pasted into the wrong field.
"""

from __future__ import annotations

import re

from keyroll.errors import UsageError
from keyroll.inventory import SecretClass

__all__ = ["ENV_VAR", "env_name_option", "option_error", "text_option"]

ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def option_error(cls: SecretClass, name: str, problem: str) -> UsageError:
    """``class 'x': options.name: problem`` as a `UsageError` (exit 2)."""
    return UsageError(f"class {cls.name!r}: options.{name}: {problem}")


def text_option(cls: SecretClass, name: str, *, required: bool = False) -> str | None:
    """A non-empty string option (None when absent and not required)."""
    value = cls.options.get(name)
    if value is None:
        if required:
            raise option_error(cls, name, f"required for kind {cls.kind.value}")
        return None
    if not isinstance(value, str) or not value:
        raise option_error(cls, name, "must be a non-empty string")
    return value


def env_name_option(cls: SecretClass, name: str, *, required: bool = False) -> str | None:
    """An option that names an env var (where a credential lives): checked, never echoed."""
    value = text_option(cls, name, required=required)
    if value is not None and not ENV_VAR.match(value):
        # not echoed: a DSN pasted here by mistake may hold a password
        raise option_error(cls, name, "is not an env var name (A-Z, 0-9, _; its text is not "
                           "shown): name the variable that holds it, never the value itself")
    return value
