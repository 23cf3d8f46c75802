"""``manage.py check``: missing, short or placeholder secrets, and keys out of step.

Messages name the setting or variable and the rule, never the value.

- ``keyroll.E001``: ``SECRET_KEY`` (or a fallback) is missing, short, a placeholder or
  low-entropy (`keyroll.runtime.startup.check_value`).
- ``keyroll.E002``: ``KEYROLL_KEY_SOURCE`` cannot load its keys.
- ``keyroll.E003``: a variable listed in ``KEYROLL_REQUIRED_SECRETS`` is unset or fails the
  same rules.
- ``keyroll.W001``: ``SECRET_KEY`` is not the key source's current key (settings.py set it
  by hand): a rotation would not reach Django.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from keyroll.errors import KeyrollError
from keyroll.model import SecretValue
from keyroll.runtime.startup import check_value


@register(Tags.security)
def check_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found: list[CheckMessage] = []
    key = getattr(settings, "SECRET_KEY", "")
    named = [("SECRET_KEY", key)]
    named += [(f"SECRET_KEY_FALLBACKS[{i}]", v)
              for i, v in enumerate(getattr(settings, "SECRET_KEY_FALLBACKS", []) or [])]
    for name, value in named:
        problems = check_value(SecretValue(str(value or "")), min_length=32)
        if problems:
            found.append(Error(f"{name} {problems[0]}", id="keyroll.E001",
                               hint="generate one with `keyroll generate` and load it with "
                                    "keyroll.django.secret_keys(source)"))
    source = getattr(settings, "KEYROLL_KEY_SOURCE", None)
    if source is not None:
        try:
            current = source.snapshot().current.value.reveal()
        except KeyrollError as exc:
            found.append(Error(f"KEYROLL_KEY_SOURCE: {exc}", id="keyroll.E002"))
        else:
            if key and current != key:
                found.append(Warning("SECRET_KEY is not KEYROLL_KEY_SOURCE's current key",
                                     id="keyroll.W001",
                                     hint="SECRET_KEY, SECRET_KEY_FALLBACKS = secret_keys(source)"))
    for var in getattr(settings, "KEYROLL_REQUIRED_SECRETS", []) or []:
        text = os.environ.get(var, "")
        problems = check_value(SecretValue(text))
        if problems:
            found.append(Error(f"{var} {problems[0]}", id="keyroll.E003"))
    return found
