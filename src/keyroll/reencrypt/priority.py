"""The CPU priority of a re-encryption job: the application's processes come first.

``keyroll reencrypt --priority``:

- ``idle`` (the default with the throttle): Linux's ``SCHED_IDLE`` policy for the thread
  that runs the job, so any ordinary process that wakes up on its processor runs at once
  (a nice value only shares the processor out; an idle task gives it up). Elsewhere, or where
  the policy is refused, the lowest nice value (19).
- ``low``: nice 19.
- ``normal``: unchanged (the default with ``--no-throttle``).

Only the job's own work (decrypting, encrypting, building the batches) is lowered; the
database server's processes are the database's. A child started from the lowered thread
inherits its priority (``SCHED_RESET_ON_FORK`` resets only real-time policies), so the job
starts its latency probes before it lowers itself: the probe measures what the application
feels.

Lowering is one-way for a process without privileges, so `run_at` runs the job in a thread
of its own and lowers only that thread (Linux schedules threads, not processes): the caller's
thread, and a test suite calling the CLI in-process, keep their priority. An interrupt in the
caller's thread (Ctrl-C) sets ``stop``, which the job checks between batches.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Literal, TypeVar

from keyroll.errors import UsageError

__all__ = ["PRIORITIES", "Priority", "check_priority", "lower_priority", "run_at"]

T = TypeVar("T")

Priority = Literal["idle", "low", "normal"]
PRIORITIES: tuple[Priority, ...] = ("idle", "low", "normal")
_LOWEST_NICE = 19
_JOIN_STEP = 0.2  # seconds: how often the caller's thread wakes to take an interrupt
_STOP_GRACE = 120.0  # seconds the job has to reach its next batch boundary once stopped


def check_priority(priority: str) -> str:
    """``priority`` if it is one of `PRIORITIES`.

    Raises:
        UsageError: it is not (one line, exit 2).
    """
    if priority not in PRIORITIES:
        raise UsageError(f"--priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    return priority


def lower_priority(priority: str) -> str:
    """Apply ``priority`` to the calling thread; what was applied (``idle``, ``nice 19``,
    ``normal``), for the report.

    Raises:
        UsageError: ``priority`` is not one of `PRIORITIES`.
    """
    if check_priority(priority) == "normal":
        return "normal"
    if priority == "idle":
        policy = getattr(os, "SCHED_IDLE", None)
        if policy is not None and hasattr(os, "sched_setscheduler"):
            try:
                os.sched_setscheduler(0, policy, os.sched_param(0))
            except OSError:
                pass  # refused (a container's seccomp profile): fall back to nice
            else:
                return "idle"
    try:
        current = os.nice(0)
        if current < _LOWEST_NICE:
            os.nice(_LOWEST_NICE - current)
    except OSError:
        return "normal"
    return f"nice {_LOWEST_NICE}"


def run_at(priority: str, work: Callable[[], T], stop: threading.Event) -> tuple[T, str]:
    """Run ``work`` at ``priority``: in this thread for ``normal``, else in a thread of its
    own lowered by `lower_priority`. Returns its result and what was applied; its exception
    is raised here. An exception in this thread while it runs (KeyboardInterrupt) sets
    ``stop``, waits for ``work`` to stop at its next batch, and is raised.
    """
    if check_priority(priority) == "normal":
        return work(), "normal"
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["applied"] = lower_priority(priority)
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="keyroll-reencrypt", daemon=True)
    worker.start()
    try:
        for _ in range(10**12):  # bounded by the job, which is bounded by its tables
            worker.join(_JOIN_STEP)
            if not worker.is_alive():
                break
    except BaseException:
        stop.set()
        worker.join(_STOP_GRACE)
        raise
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    return box["result"], str(box["applied"])  # type: ignore[return-value]
