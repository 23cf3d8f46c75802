"""The Django app ``keyroll.django``: registers the system check."""

from __future__ import annotations

from django.apps import AppConfig


class KeyrollConfig(AppConfig):
    name = "keyroll.django"
    label = "keyroll"
    verbose_name = "keyroll"

    def ready(self) -> None:
        from keyroll.django import checks  # noqa: F401  (registers on import)
