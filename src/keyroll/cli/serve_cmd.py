"""``keyroll serve``: the rotator as a long-running process (systemd, Kubernetes, Compose).

Every ``--interval`` (jittered) it runs one ``keyroll advance`` tick under the store-wide
rotator lease (`keyroll.rotation.rotator`), so any number of replicas tick one at a time. On
SIGTERM or SIGINT it finishes the step in progress, releases the lease and exits 0. With the
``web`` extra it also serves the dashboard, ``/metrics`` (with
``keyroll_rotator_last_tick_timestamp_seconds``) and ``/healthz`` (503 once no tick succeeded
for three intervals) on ``--port``; ``--no-web`` turns that off. ``--max-ticks`` and
``--deadline`` bound the run (tests, and a CronJob that wants one tick: ``--max-ticks 1``).
Each tick checks the audit journal from its verified-head checkpoint on, and every
``--full-check-every`` (default 1h) walks the whole chain (`keyroll.audit_check`).
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import err, escape, out
from keyroll.durations import parse_duration
from keyroll.errors import UsageError
from keyroll.rotation.rotator import Rotator, TickResult
from keyroll.stores import Store, open_store

if TYPE_CHECKING:
    import uvicorn

__all__ = ["register"]


def _duration(text: str, what: str) -> timedelta:
    """``60s``, ``5m``, ``1h`` … or a number of seconds (``0.5``)."""
    try:
        number = float(text)
    except ValueError:
        number = None
    try:
        value = (timedelta(seconds=number) if number is not None and 0 <= number < 10**7
                 else parse_duration(text))
    except (ValueError, UsageError, OverflowError):
        raise UsageError(f"{what} {escape(text[:40])!r} is not a duration: use e.g. 60s, 5m, 1h"
                         ) from None
    if value <= timedelta(0):
        raise UsageError(f"{what} must be positive (e.g. 60s)")
    return value


def _start_web(app: AppContext, host: str, port: int, interval: timedelta,
               allowed: list[str]) -> tuple[uvicorn.Server, threading.Thread] | None:
    """The dashboard in a thread, or None (with a note) when the web extra is missing."""
    from keyroll.cli.dashboard_cmd import _listen, allowed_hosts
    from keyroll.dashboard import create_app, freeze_startup_objects

    try:
        import uvicorn
    except ImportError:
        err().print("note: no /healthz or dashboard: the web extra is not installed "
                    "(pip install 'keyroll[web]'); the rotator runs without them", markup=False)
        return None
    url = app.store_url or os.environ.get("KEYROLL_STORE") or app.inventory.store.url
    base = app.inventory_path.parent

    def store_factory() -> Store:
        return open_store(url, base=base, create=False)

    web = create_app(store_factory, app.inventory, clock=app.clock,
                     allowed_hosts=allowed_hosts(host, allowed), rotator_stale_after=interval * 3)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(web, host=host, port=bound, access_log=False, log_level="warning",
                            server_header=False)
    server = uvicorn.Server(config)
    freeze_startup_objects()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="keyroll-web", daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    err().print(f"keyroll serve: dashboard on http://{shown}:{bound}/ (/healthz, /metrics)",
                markup=False)
    return server, thread


def _printer(result: TickResult, notify: Any) -> None:
    console = out()
    if not result.ran:
        line = f"tick {result.at:%H:%M:%S}: " + (
            f"skipped: {result.error}" if result.error else
            "another replica is ticking; skipped")
        console.print(line, markup=False)
        return
    if result.error:
        err().print(f"error: tick {result.at:%H:%M:%S}: {escape(result.error)}", markup=False)
    elif result.report is not None:
        r = result.report
        console.print(f"tick {result.at:%H:%M:%S}: {len(r.moved)} moved, {len(r.started)} "
                      f"started, {len(r.waiting)} waiting, {len(r.busy)} busy, "
                      f"{len(r.failed)} failed" + (" (stopping)" if result.stopped else ""),
                      markup=False)
        for what, why in r.failed:
            err().print(f"error: {escape(str(what))}: {escape(str(why))}", markup=False)
    if result.journal is not None and not result.journal.ok:
        err().print(f"error: audit journal check failed: {escape(result.journal.problems[0])}",
                    markup=False)
        if notify is not None:
            notify.journal_failed(result.journal)
    if notify is not None:
        report = notify.flush()
        for line in report.failed:
            err().print(f"warning: notification not sent: {escape(line)}", markup=False)


def serve(
    ctx: typer.Context,
    interval: Annotated[str, typer.Option("--interval", help="Time between ticks (60s, 5m).")]
    = "60s",
    jitter: Annotated[float, typer.Option("--jitter", min=0.0, max=0.9,
                                          help="Spread each wait by ± this fraction.")] = 0.1,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    start_due: Annotated[bool, typer.Option("--start-due/--no-start-due",
                                            help="Start due rotations where auto = true.")] = True,
    max_ticks: Annotated[int | None, typer.Option("--max-ticks", min=1,
                                                  help="Stop after this many ticks.")] = None,
    deadline: Annotated[str | None, typer.Option("--deadline",
                                                 help="Stop after this long (10m, 1h).")] = None,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Serve /healthz, /metrics and the "
                                      "dashboard (needs the web extra).")] = True,
    host: Annotated[str, typer.Option("--host", help="Address for the web endpoints.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535,
                                      help="Port for the web endpoints (0: any free one).")] = 8080,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="Also answer this Host name (repeatable).")] = None,
    full_check_every: Annotated[str, typer.Option(
        "--full-check-every", help="How often a tick runs a full check of the audit journal "
        "(1h, 1d; 'off': never). Other ticks check only what follows the verified head.")]
    = "1h",
) -> None:
    """Run the rotator: `advance` every --interval, one replica at a time; SIGTERM stops it
    cleanly between steps."""
    app: AppContext = ctx.obj
    every = _duration(interval, "--interval")
    until = _duration(deadline, "--deadline") if deadline is not None else None
    full_every = (None if full_check_every.strip().lower() in ("off", "never")
                  else _duration(full_check_every, "--full-check-every"))
    inventory = app.inventory
    environments = set(inventory.environments) if env is None else {env}
    if env is not None:
        inventory.policy(env)
    if app.clock_moved:
        raise UsageError(f"{app.clock_moved} cannot be used with `keyroll serve`: the rotator "
                         "runs in real time (use `keyroll advance --now` for a drill)")
    from keyroll.cli.rotate_cmd import _engine

    engine = _engine(app)
    notifier = app.notifier
    rotator = Rotator(engine, interval=every, jitter=jitter, environments=environments,
                      start_due=start_due, max_ticks=max_ticks, deadline=until,
                      verify_every=full_every, after_tick=lambda result: _printer(result, notifier))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        rotator.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    served = _start_web(app, host, port, every, allowed_host or []) if web else None
    err().print(f"keyroll serve: every {interval} (±{jitter:.0%}) on {len(environments)} "
                f"environment(s), pid {os.getpid()}", markup=False)
    try:
        rotator.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if served is not None:
            server, thread = served
            server.should_exit = True
            thread.join(timeout=10)
    err().print("keyroll serve: stopped" + (" (signal)" if rotator.stopping() else ""),
                markup=False)


def register(app: typer.Typer) -> None:
    """Add ``keyroll serve`` to the CLI."""
    app.command()(serve)
