"""`FileKeySource`: a key ring read from mounted files, reloaded while the app runs.

::

    # a Kubernetes Secret volume: one file per variable
    source = FileKeySource.jwt_secret(path="/var/run/secrets/app")
    # or one dotenv file (Compose, a VM): the same variables, KEY=value lines
    source = FileKeySource.jwt_secret(path="/run/keyroll/keyroll.env")
    ring = JWTKeyRing(source)

The variables and their validation are `EnvKeySource`'s (this class is one: only where the
variables come from differs): ``JWT_SECRET`` signs, ``JWT_SECRET_PREVIOUS`` and
``JWT_SECRET_NEXT`` verify, ``<VAR>_KID`` gives each its kid (seeds 001, 003 and 004 through the
same constructors: `jwt_secret`, `jwt_secret_key`, `secret_key`).

How a reload stays whole:

- **Kubernetes Secret volumes** are written by the kubelet into a fresh timestamped directory,
  then published by renaming one symlink, ``..data``, over the old one; the visible files are
  symlinks through ``..data``. The source resolves ``..data`` once, reads every file from that
  one directory, and checks ``..data`` still points there afterwards (else it reads again, at
  most three times per poll), so it never mixes two versions of the Secret. Such a snapshot is
  used at once.
- **Plain files** (a dotenv file, a directory written by hand or by another tool) may be read
  while they are half written. A changed set of files (inode, size, modification time of each)
  is used only when the next poll finds it unchanged, so a new key reaches the app within two
  intervals, and a write that is still going on is never used.
- A snapshot is used only when it is complete and valid (`EnvKeySource`'s checks). A missing
  current file, an unreadable file, a bad kid or a weak value keep the last good snapshot; the
  failure is counted (`failures`) and logged without any value.

Only the source's own variables are read (`EnvKeySource.variable_names`), each at most 64 KiB.
Every key use is counted per kid (`KeySource.usage`); with ``prometheus-client`` installed
they are exported as ``keyroll_key_uses_total{ring,kid}`` and
``keyroll_key_last_used_timestamp_seconds{ring,kid}`` (`keyroll.runtime.metrics`), so the
engine's usage-aware overlap can read them from a scrape (``overlap.usage_from``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from keyroll import dotenv
from keyroll.errors import KeyrollError
from keyroll.layout import Layout
from keyroll.runtime import metrics
from keyroll.runtime.keysource import EnvKeySource, Key

__all__ = ["FileKeySource", "FileSourceError"]

_MAX_BYTES = 64 * 1024
_DATA = "..data"
_ATTEMPTS = 3


class FileSourceError(KeyrollError):
    """The key files could not be read whole (missing, unreadable, too large, not UTF-8)."""


def _read(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileSourceError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > _MAX_BYTES:
        raise FileSourceError(f"{path} is larger than {_MAX_BYTES} bytes: not a key file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileSourceError(f"{path} is not UTF-8 text") from None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class FileKeySource(EnvKeySource):
    """Keys from a mounted directory (one file per variable) or a dotenv file, polled.

    Args:
        current_var, previous_var, next_var, separator, derive_kids, min_length: as
            `EnvKeySource` (the same conventions, the same checks).
        path: a directory (a Kubernetes Secret volume: ``JWT_SECRET``, ``JWT_SECRET_KID``, …
            one file each) or a dotenv file.
        refresh_interval: seconds between polls (default 2).
        clock: monotonic seconds.
        metrics: export the usage counters to Prometheus when ``prometheus-client`` is installed.

    Raises:
        FileSourceError: the path is missing or unreadable at construction.
        SecretRejected, UsageError: the first snapshot is incomplete or invalid (as
            `EnvKeySource`); later failures keep the last good snapshot.
    """

    _origin = "file"

    def __init__(
        self,
        current_var: str,
        previous_var: str | None = None,
        *,
        path: str | os.PathLike[str],
        next_var: str | None = None,
        separator: str | None = None,
        derive_kids: bool = True,
        min_length: int = 32,
        refresh_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: bool = True,
        layout: Layout | None = None,
    ) -> None:
        self.path = Path(path)
        #: polls that found the files incomplete, unreadable or invalid (never reset)
        self.failures = 0
        self._accepted: object = None
        self._seen: object = None
        super().__init__(
            current_var, previous_var, next_var=next_var, separator=separator,
            derive_kids=derive_kids, min_length=min_length, refresh_interval=refresh_interval,
            clock=clock, layout=layout,
        )
        self.name = f"file:{self.path}:{current_var}"
        if metrics:
            _track(self)

    # --- reading --------------------------------------------------------------------------

    def _load(self) -> tuple[Key, ...]:
        try:
            return tuple(super()._load())
        except Exception:
            self.failures += 1
            raise

    def _variables(self) -> Mapping[str, str] | None:
        atomic, signature, read = self._snapshot_files()
        first = not self._last_keys
        if not first and signature == self._accepted:
            return None  # nothing changed since the snapshot in use
        if not (first or atomic or signature == self._seen):
            self._seen = signature  # changed: use it only if the next poll sees the same files
            return None
        values = read()
        self._seen = signature
        self._accepted = signature
        return values

    def _snapshot_files(self) -> tuple[bool, object, Callable[[], dict[str, str]]]:
        """(atomic layout?, a signature of what would be read, a function reading it)."""
        folder = self.path if self.path.is_dir() else self.path.parent
        data = folder / _DATA
        if data.is_symlink():
            for _ in range(_ATTEMPTS):
                target = os.readlink(data)
                values = self._read_from(folder / target)
                if os.readlink(data) == target:  # the kubelet did not swap it meanwhile
                    return True, target, lambda values=values: values
            raise FileSourceError(f"{folder}: {_DATA} kept changing while it was read")
        if self.path.is_dir():
            names = self.variable_names()
            signature = tuple((name, _stamp(self.path / name)) for name in names)
            return False, signature, lambda: self._read_from(self.path)
        if not self.path.exists():
            raise FileSourceError(f"{self.path} does not exist (not mounted yet, or deleted)")
        return False, _stamp(self.path), lambda: self._read_from(self.path.parent)

    def _read_from(self, folder: Path) -> dict[str, str]:
        """The variables, from one file each in ``folder``, or from the dotenv file."""
        if not self.path.is_dir():
            target = folder / self.path.name
            try:
                return dotenv.parse(_read(target))
            except FileNotFoundError:
                raise FileSourceError(f"{target} does not exist") from None
        values: dict[str, str] = {}
        for name in self.variable_names():
            try:
                values[name] = _read(folder / name).rstrip("\r\n")
            except FileNotFoundError:
                continue
        return values


def _track(source: FileKeySource) -> None:
    metrics.track(source)
