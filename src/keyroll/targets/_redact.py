"""Build `TargetError` messages that name the place and the step, never a secret.

Each adapter translates its driver's exceptions once, through `target_error`: the driver's own
text is reduced to its first line and every secret the adapter knows of in that call is cut
out of it (`keyroll.scrub.scrub`: passwords of URLs and conninfo too) before it becomes part
of a message. Chaining is suppressed (``from None``) by the
callers so a driver's traceback cannot carry a value further.
"""

from __future__ import annotations

from collections.abc import Iterable

from keyroll.errors import TargetError
from keyroll.scrub import REDACTED, scrub

__all__ = ["REDACTED", "target_error"]


def target_error(
    system: str,
    where: str,
    step: str,
    problem: str,
    hint: str,
    *,
    cause: BaseException | str | None = None,
    secrets: Iterable[str] = (),
) -> TargetError:
    """A `TargetError` whose message reads: system, place, step, what happened, what to do.

    Args:
        system: ``PostgreSQL``, ``PgBouncer`` or ``Redis``.
        where: ``host:port`` (and database), never a DSN with its password.
        step: the adapter operation, e.g. ``set-password role 'app_b'``.
        problem: what went wrong, in keyroll's words.
        hint: what the operator should do.
        cause: the driver's exception or text; its first line is appended after redaction.
        secrets: values to cut out of the driver's text.
    """
    detail = ""
    if cause is not None:
        first = scrub(str(cause), secrets).strip() or type(cause).__name__
        detail = f" ({first})"
    return TargetError(f"{system} {where}: {step}: {problem}{detail}. {hint}")
