"""The latency probe beside a re-encryption job: a child process with its own connection.

The probe is a cheap indexed read of the table being re-encrypted, paced (``interval``), so it
feels what the application's reads feel: CPU, I/O and lock contention on the database host.
Given ``keys`` (a sample of the table's keys) it looks one row up by its key at a time, going
round them, as an application's point reads do; always the same row would measure one hot
index page the job itself just rewrote. The sample is large (10,000 keys) and not warmed row
by row: like the application's, most of its reads find rows the cache may or may not hold,
and the baseline measures exactly that (only the first reads warm the connection and plan).
It runs in a *process* of its own (multiprocessing, spawn) because a thread in the job's
process would time the job's own Python work (the GIL) instead of the database. The DSN goes
to the child through multiprocessing's pipe, never on a command line. The child stops when
the parent asks, when the parent dies, or after ``max_seconds``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

from keyroll.scrub import scrub

__all__ = ["ProcessProbe"]

_SEND_EVERY = 0.05  # seconds between two messages to the parent
_STARTUP_TIMEOUT = 30.0
_WARM = 100


def _probe_loop(conninfo: str, query: str, keys: list[Any], interval: float,
                max_seconds: float, stop: Any, out: Any) -> None:  # pragma: no cover - child
    import psycopg

    parent = os.getppid()
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10,
                               application_name="keyroll-reencrypt-probe")
    except psycopg.Error as exc:
        out.send(("error", scrub(str(exc))))
        return
    buffered: list[float] = []
    sent = time.monotonic()
    deadline = sent + max_seconds
    params: list[tuple[Any, ...]] = [(key,) for key in keys] or [()]
    with conn:
        try:
            for args in params[:_WARM]:  # the connection and the plan, not the rows
                conn.execute(query, args, prepare=True).fetchall()
        except psycopg.Error as exc:
            out.send(("error", scrub(str(exc))))
            return
        out.send(("ready", None))
        for n in range(10**12):  # bounded by stop, the deadline and the parent's life
            if stop.is_set() or time.monotonic() >= deadline or os.getppid() != parent:
                break
            began = time.perf_counter()
            try:
                conn.execute(query, params[n % len(params)], prepare=True).fetchall()
            except psycopg.Error as exc:
                out.send(("error", scrub(str(exc))))
                return
            buffered.append((time.perf_counter() - began) * 1000)
            if time.monotonic() - sent >= _SEND_EVERY:
                try:
                    out.send(("samples", buffered))
                except (BrokenPipeError, OSError):
                    return
                buffered, sent = [], time.monotonic()
            time.sleep(interval)


class ProcessProbe:
    """Starts the probe child; `drain` returns its latencies (ms) since the last call.

    Raises:
        TargetError: the child could not connect (the message has no password).
    """

    def __init__(self, conninfo: str, query: str, *, interval: float,
                 keys: list[Any] | None = None, max_seconds: float = 86_400.0) -> None:
        from keyroll.errors import TargetError

        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        receive, send = ctx.Pipe(duplex=False)
        self._receive = receive
        self.error: str | None = None
        self.proc = ctx.Process(target=_probe_loop, daemon=True,
                                args=(conninfo, query, list(keys or ()), interval,
                                      max_seconds, self._stop, send))
        self.proc.start()
        send.close()
        if not receive.poll(_STARTUP_TIMEOUT):
            self.close()
            raise TargetError("PostgreSQL: the re-encryption latency probe did not start")
        kind, payload = receive.recv()
        if kind == "error":
            self.close()
            raise TargetError(f"PostgreSQL: the latency probe cannot connect: {payload}")

    def drain(self) -> list[float]:
        samples: list[float] = []
        for _ in range(100_000):  # bounded: the child sends ~20 messages a second
            try:
                if not self._receive.poll():
                    break
                kind, payload = self._receive.recv()
            except (EOFError, OSError):
                break
            if kind == "samples":
                samples.extend(payload)
            elif kind == "error":
                self.error = str(payload)
        return samples

    def close(self) -> None:
        self._stop.set()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self._receive.close()
