"""The exit codes of ``keyroll`` (README's table is this module, in prose).

A rotation parked in its overlap, at a promote delay, at a manual step or waiting for another
person's approval is not an error, and not done either: commands that leave one there exit
`WAITING`, the code sysexits.h calls ``EX_TEMPFAIL`` ("the user is invited to retry later"),
which mail transfer agents use for a deferred message. A script that treats waiting as
success writes ``keyroll rotate … || [ $? -eq 75 ]``.
"""

from __future__ import annotations

__all__ = ["BAD_INPUT", "FAILED", "OK", "OVERDUE", "WAITING"]

#: Done.
OK = 0
#: A step failed (the rotation rolled back or rotates back), tampering, rows left, a due secret.
FAILED = 1
#: Bad input; nothing changed (every `keyroll.errors.UsageError` and click usage error).
BAD_INPUT = 2
#: ``status --fail-on due|overdue`` found an overdue secret.
OVERDUE = 3
#: A rotation (or an escrow restore) waits: overlap, promote delay, manual step, approval.
WAITING = 75
