"""What every command needs: the inventory, the store, the journal and the clock.

Loaded lazily, so ``keyroll init`` and ``--help`` work without an inventory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from keyroll.audit import Journal
from keyroll.cli.output import err, escape
from keyroll.errors import UsageError
from keyroll.inventory import Inventory, find_inventory, load_inventory
from keyroll.model import utcnow
from keyroll.stores import Store, open_store

__all__ = ["AppContext", "clock_from_env", "parse_time"]


def clock_from_env() -> Callable[[], datetime]:
    """The clock: real time, or a fixed/offset one from ``KEYROLL_NOW`` for demos and tests.

    ``KEYROLL_NOW`` is an ISO 8601 time (``2026-12-24T02:00:00Z``).
    """
    text = os.environ.get("KEYROLL_NOW")
    if not text:
        return utcnow
    fixed = parse_time(text, "KEYROLL_NOW")
    return lambda: fixed


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time (``Z`` allowed; naive means UTC). `UsageError` naming ``what``.

    Times before 1970 or from the year 3000 on are refused: the engine adds cadences and
    overlaps to them, and near datetime's limits that addition would overflow mid-rotation.
    """
    shown = escape(text[:64])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise UsageError(f"{what} {shown} is not an ISO time: use e.g. 2026-12-24T02:00:00Z"
                         ) from None
    if not _EARLIEST <= moment < _LATEST:
        raise UsageError(f"{what} {shown} is out of range: use a time between 1970 and 2999")
    return moment


@dataclass
class AppContext:
    """Per-invocation state of the CLI."""

    config: Path | None = None
    store_url: str | None = None
    _opened: list[Store] = field(default_factory=list)

    @cached_property
    def inventory_path(self) -> Path:
        if self.config is not None:
            return self.config
        env = os.environ.get("KEYROLL_CONFIG")
        return Path(env) if env else find_inventory(Path.cwd())

    @cached_property
    def inventory(self) -> Inventory:
        return load_inventory(self.inventory_path)

    @cached_property
    def clock(self) -> Callable[[], datetime]:
        return clock_from_env()

    @cached_property
    def store(self) -> Store:
        url = self.store_url or os.environ.get("KEYROLL_STORE") or self.inventory.store.url
        store = open_store(url, base=self.inventory_path.parent, create=False)
        self._opened.append(store)
        for notice in getattr(store, "notices", ()):
            err().print(notice, markup=False)
        return store

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.store, clock=self.clock)

    def close(self) -> None:
        for store in self._opened:
            store.close()
