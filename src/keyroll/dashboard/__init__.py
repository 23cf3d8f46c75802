"""The dashboard and metrics: every secret's age, due date, state and history (extra ``web``).

`create_app` builds a read-only FastAPI app over a store and an inventory::

    from keyroll.dashboard import create_app
    app = create_app(lambda: open_store(url, base=root), inventory)   # serve with uvicorn

or run ``keyroll dashboard``. FastAPI, jinja2 and prometheus-client are imported only when
the app is built; without them `create_app` raises `UsageError` naming the extra to install.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from keyroll.errors import UsageError
from keyroll.inventory import Inventory
from keyroll.model import utcnow
from keyroll.stores.base import Store

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["INSTALL_HINT", "WEB_MODULES", "create_app", "freeze_startup_objects", "require_web"]

#: What to run when the web extra is missing.
INSTALL_HINT = "pip install 'keyroll[web]'"
#: The top-level modules the extra provides.
WEB_MODULES = frozenset({"fastapi", "starlette", "uvicorn", "jinja2", "markupsafe",
                         "prometheus_client", "httpx", "anyio", "h11"})


def require_web(error: ImportError) -> UsageError:
    """The error to raise for an `ImportError` of the web extra (re-raise anything else).

    Raises:
        ImportError: ``error`` itself, when the missing module is not one of the extra's (a
            bug, not a missing install).
    """
    missing = (error.name or "").split(".")[0]
    if missing not in WEB_MODULES:
        raise error
    return UsageError(f"the dashboard needs the web extra ({missing} is missing): {INSTALL_HINT}")


def freeze_startup_objects() -> None:
    """Collect, then move every object alive now out of the garbage collector's sight
    (`gc.freeze`). For a process about to serve the dashboard for a long time (``keyroll
    dashboard``, ``keyroll serve``): the modules, the app and the inventory are some 70,000
    objects that every full collection would otherwise walk, taking 40–80 ms out of whichever
    request triggers it. They are still freed by reference counting; only cycles among them
    are never collected, and they live as long as the process anyway."""
    gc.collect()
    gc.freeze()


def create_app(
    store_factory: Callable[[], AbstractContextManager[Store]],
    inventory: Inventory,
    *,
    clock: Callable[[], datetime] = utcnow,
    title: str | None = None,
    allowed_hosts: Sequence[str] = ("localhost", "127.0.0.1", "[::1]"),
    rotator_stale_after: timedelta | None = None,
) -> FastAPI:
    """Build the dashboard app.

    Args:
        store_factory: opens the store for one request or scrape, as a context manager that
            closes it (a `Store` is one): ``lambda: open_store(url, base=root)``. Tests that
            share one store pass ``lambda: contextlib.nullcontext(store)``.
        inventory: the secret classes (loaded once; restart to pick up edits).
        clock: the time source for ages and due dates.
        title: the page header (default ``keyroll · <project>``).
        allowed_hosts: ``Host`` header values it answers (default: loopback names); any other
            gets 400, which defeats DNS rebinding. Add the name a proxy serves it under.
        rotator_stale_after: ``keyroll serve`` passes three intervals: ``/healthz`` answers
            503 once the rotator's last successful tick is older than that.

    Returns:
        A FastAPI app with only GET routes: pages, ``/api/…``, ``/healthz``, ``/metrics``.

    Raises:
        UsageError: the ``web`` extra is not installed (the message says how to install it).
    """
    try:
        from keyroll.dashboard.app import build_app
    except ImportError as exc:
        raise require_web(exc) from None
    return build_app(store_factory, inventory, clock=clock, title=title,
                     allowed_hosts=allowed_hosts, rotator_stale_after=rotator_stale_after)
