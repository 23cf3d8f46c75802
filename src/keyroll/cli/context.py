"""What every command needs: the inventory, the store, the journal and the clock.

Loaded lazily, so ``keyroll init`` and ``--help`` work without an inventory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from keyroll.audit import Journal, current_actor
from keyroll.cli.output import err, escape
from keyroll.errors import KeyrollError, UsageError
from keyroll.inventory import Inventory, find_inventory, load_inventory, parse_inventory
from keyroll.model import utcnow
from keyroll.stores import Store, open_store

if TYPE_CHECKING:
    from keyroll.notify.events import EventNotifier

__all__ = ["STDIN", "AppContext", "clock_from_env", "parse_time"]

#: The file name that means standard input (or output, where a command writes).
STDIN = "-"


def clock_from_env() -> Callable[[], datetime]:
    """The clock: real time, or a fixed one from ``KEYROLL_NOW`` for demos and drills.

    ``KEYROLL_NOW`` is an ISO 8601 time (``2026-12-24T02:00:00Z``). It obeys the guard
    ``--now`` has: `AppContext.clock_for` never applies it to a ``production = true``
    environment, and the journal always records real time.
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
    moved_by: str | None = None  # "--now" once a command moved the clock itself
    _opened: list[Store] = field(default_factory=list)
    _stdin_by: str | None = None

    @cached_property
    def inventory_path(self) -> Path:
        """keyroll.toml; ``--config -`` reads it from stdin (relative store paths and hooks
        then start from the current folder)."""
        if self.config is not None:
            return self.config
        env = os.environ.get("KEYROLL_CONFIG")
        return Path(env) if env else find_inventory(Path.cwd())

    @cached_property
    def inventory(self) -> Inventory:
        if str(self.inventory_path) == STDIN:
            text = self.read_input(self.inventory_path, "--config").decode("utf-8", "replace")
            return parse_inventory(text, Path("<stdin>"))
        return load_inventory(self.inventory_path)

    def claim_stdin(self, what: str) -> None:
        """Record that ``what`` reads stdin; a second reader is bad input (exit 2), since
        stdin can be read once: ``--config -`` with ``import --file -`` cannot both work.

        Raises:
            UsageError: another option of this command reads stdin already.
        """
        if self._stdin_by is not None and self._stdin_by != what:
            raise UsageError(f"{what} and {self._stdin_by} both read stdin: give one of "
                             "them a file")
        self._stdin_by = what

    def read_input(self, path: Path, what: str) -> bytes:
        """The bytes of the file ``path`` names for option ``what``; ``-`` reads stdin.

        Raises:
            UsageError: no such file, a directory, unreadable, or stdin claimed twice.
        """
        shown = escape(str(path))
        if str(path) == STDIN:
            self.claim_stdin(f"{what} -")
            binary = getattr(sys.stdin, "buffer", None)
            return binary.read() if binary is not None else sys.stdin.read().encode()
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{what} {shown}: cannot read it (it does not exist: check the path, "
                             "or pass - for stdin)") from None
        except IsADirectoryError:
            raise UsageError(f"{what} {shown} is a directory: pass the file itself") from None
        except OSError as exc:
            raise UsageError(f"{what} {shown}: cannot read it "
                             f"({exc.strerror or exc.__class__.__name__})") from None

    @cached_property
    def clock(self) -> Callable[[], datetime]:
        """The moved clock of ``KEYROLL_NOW``/``--now``, or real time. Only for environments
        that are not production: use `clock_for` (or `guard_clock`) where one is named."""
        return clock_from_env()

    @property
    def clock_moved(self) -> str | None:
        """What moved the clock (``KEYROLL_NOW`` or ``--now``), or None for real time."""
        if self.moved_by is not None:
            return self.moved_by
        return "KEYROLL_NOW" if os.environ.get("KEYROLL_NOW") else None

    def clock_for(self, environment: str) -> Callable[[], datetime]:
        """The clock for one environment: real time for a production environment, always."""
        if self.clock_moved and self.inventory.policy(environment).production:
            return utcnow
        return self.clock

    def now_for(self, environment: str) -> datetime:
        return self.clock_for(environment)()

    def guard_clock(self, environment: str) -> None:
        """Refuse to act on a production environment under a moved clock (exit 2).

        Raises:
            UsageError: the clock is moved and ``environment`` is production.
        """
        what = self.clock_moved
        if what and self.inventory.policy(environment).production:
            raise UsageError(
                f"{what} cannot be used on {environment}: it is a production environment "
                f"(unset {what} to act on it in real time)"
            )

    def production_environments(self) -> set[str]:
        return {e for e, p in self.inventory.environments.items() if p.production}

    @cached_property
    def store(self) -> Store:
        url = self.store_url or os.environ.get("KEYROLL_STORE") or self.inventory.store.url
        store = open_store(url, base=self.inventory_path.parent, create=False)
        self._opened.append(store)
        for notice in getattr(store, "notices", ()):
            err().print(notice, markup=False)
        return store

    @cached_property
    def identity(self) -> tuple[str, frozenset[str]]:
        """Who acts, and their groups. On a store that knows its caller (OpenBao/Vault: the
        token's entity or display name) that identity, whatever ``KEYROLL_ACTOR`` says; on the
        local store ``KEYROLL_ACTOR`` or the OS user, a name the caller chose (see README)."""
        known = self.store.identity()
        if known is None:
            return current_actor(), frozenset()
        name, groups = known
        declared = os.environ.get("KEYROLL_ACTOR")
        if declared and declared != name:
            err().print(f"note: KEYROLL_ACTOR is ignored: the store identifies you as "
                        f"{escape(name)}", markup=False)
        return name, frozenset(groups)

    @property
    def actor(self) -> str:
        return self.identity[0]

    @cached_property
    def journal(self) -> Journal:
        """The journal records real time, whatever clock the engine runs on."""
        return Journal(self.store, actor=self.actor)

    @cached_property
    def notifier(self) -> EventNotifier | None:
        """The rotation-event notifier of ``[notify]`` (None when no channel is configured);
        its queue is sent when the command ends (`close`)."""
        from keyroll.notify.events import EventNotifier

        notifier = EventNotifier(self.store, self.inventory, os.environ)
        return notifier if notifier.channels else None

    def flush_notices(self) -> None:
        """Send queued notices; a failing channel is one warning line, never the exit code."""
        notifier = self.__dict__.get("notifier")
        if notifier is None:
            return
        try:
            report = notifier.flush()
        except KeyrollError as exc:
            err().print(f"warning: notifications not sent: {escape(str(exc))}", markup=False)
            return
        for line in report.failed:
            err().print(f"warning: notification not sent: {escape(line)}", markup=False)

    def close(self) -> None:
        self.flush_notices()
        for store in self._opened:
            store.close()
