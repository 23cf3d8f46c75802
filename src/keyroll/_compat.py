"""What the runtime needs from Python 3.11, for Python 3.10 (issue 11 §7).

The runtime library (and every module it imports) runs on Python 3.10, still common in
``python:3.10`` images; the CLI and the engine need 3.11+ (``tomllib``). Import ``UTC`` and
``StrEnum`` from here in those modules, never from ``datetime``/``enum``.
"""

from __future__ import annotations

import sys
from datetime import timezone
from enum import Enum

__all__ = ["UTC", "StrEnum"]

UTC = timezone.utc

if sys.version_info >= (3, 11):
    from enum import StrEnum as StrEnum
else:  # pragma: no cover  (exercised by the Python 3.10 runtime run)

    class StrEnum(str, Enum):
        """`enum.StrEnum` as 3.11 has it: str() and format() give the value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)
