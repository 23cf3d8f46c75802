"""The job's CPU priority: lowered in a thread of its own, never in the caller's thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from keyroll.errors import UsageError
from keyroll.reencrypt.priority import lower_priority, run_at

linux = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")

_CHILD_POLICY = "import os; print(os.sched_getscheduler(0), os.nice(0))"


def _policy() -> int:
    return os.sched_getscheduler(0)


@linux
def test_idle_runs_the_work_in_an_idle_thread_and_leaves_the_caller_alone() -> None:
    before = (_policy(), os.nice(0))
    seen: dict[str, object] = {}

    def work() -> str:
        seen["policy"] = _policy()
        seen["thread"] = threading.current_thread().name
        # a child started by the job inherits it: the job starts its probes before
        seen["child"] = subprocess.run([sys.executable, "-c", _CHILD_POLICY], check=True,
                                       capture_output=True, text=True, timeout=60).stdout.split()
        return "done"

    result, applied = run_at("idle", work, threading.Event())
    assert (result, applied) == ("done", "idle")
    assert seen["policy"] == os.SCHED_IDLE
    assert seen["thread"] == "keyroll-reencrypt"
    assert seen["child"] == [str(os.SCHED_IDLE), str(before[1])]
    assert (_policy(), os.nice(0)) == before  # the caller's thread (this test suite) unchanged


def test_low_is_nice_19_in_its_own_thread() -> None:
    before = os.nice(0)
    result, applied = run_at("low", lambda: os.nice(0), threading.Event())
    assert (result, applied) == (19, "nice 19")
    assert os.nice(0) == before


def test_normal_runs_here_unchanged() -> None:
    before = (_policy(), os.nice(0))
    result, applied = run_at("normal", threading.current_thread, threading.Event())
    assert result is threading.current_thread() and applied == "normal"
    assert lower_priority("normal") == "normal"
    assert (_policy(), os.nice(0)) == before


def test_the_work_s_exception_is_raised_in_the_caller() -> None:
    def work() -> None:
        raise ValueError("planted")

    with pytest.raises(ValueError, match="planted"):
        run_at("low", work, threading.Event())


@pytest.mark.parametrize("bad", ["high", "", "IDLE", "nice"])
def test_an_unknown_priority_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="--priority must be one of idle, low, normal"):
        lower_priority(bad)
    with pytest.raises(UsageError, match="--priority"):
        run_at(bad, lambda: None, threading.Event())


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
def test_an_interrupt_in_the_caller_stops_the_work_at_its_next_batch() -> None:
    stop = threading.Event()
    batches: list[int] = []

    def work() -> None:
        for n in range(2000):  # a job of batches of 5 ms, ten seconds at most
            if stop.is_set():
                raise KeyboardInterrupt
            batches.append(n)
            time.sleep(0.005)
        raise AssertionError("the job was never told to stop")

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_at("low", work, stop)
    finally:
        timer.cancel()
    assert stop.is_set()
    assert 5 < len(batches) < 2000
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "keyroll-reencrypt")
