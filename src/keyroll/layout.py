"""The one table of env-var layouts: which variables hold a key's current, previous and next
value and their kids.

Every writer (``keyroll export``, the ``write_dotenv`` deploy hook, through `keyroll.render`)
and every reader (`keyroll.runtime.keysource.EnvKeySource`) asks this module, so they cannot
disagree. A class picks its layout in keyroll.toml (``layout = "seed-003"``); the default is
``suffix``, the layout keyroll always wrote.

- ``suffix``: ``JWT_SECRET``; previous ``JWT_SECRET_PREVIOUS``; next ``JWT_SECRET_NEXT``; kids
  ``<var>_KID`` (``JWT_SECRET_KID``, ``JWT_SECRET_PREVIOUS_KID``, ``JWT_SECRET_NEXT_KID``).
- ``seed-004``: the same names (seed 004 §3.1: ``JWT_SECRET`` + ``JWT_SECRET_PREVIOUS``).
- ``seed-003``: ``JWT_SECRET_KEY_CURRENT``; previous ``JWT_SECRET_KEY_PREVIOUS``; next
  ``JWT_SECRET_KEY_NEXT``; kids ``<var>_KID``. The inventory's name must end in ``_CURRENT``.
- ``seed-001``: ``SECRET_KEY``; previous ``OLD_SECRET_KEYS`` (a comma-separated list, kids in
  ``OLD_SECRET_KEYS_KIDS``); next ``SECRET_KEY_NEXT``; kids ``SECRET_KEY_KID``,
  ``SECRET_KEY_NEXT_KID``.

A reader also looks for the *other* layouts' spellings of the same key; when one is set and its
own is not, the environment was written for another layout (the app would silently hold one key
and log everyone out at the next promote), so it refuses at startup and names the layout to use.
Core module: no optional dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_LAYOUT", "LAYOUTS", "Layout", "VarNames", "check_layout", "layout_mismatch"]

DEFAULT_LAYOUT = "suffix"


@dataclass(frozen=True, slots=True)
class VarNames:
    """The variables of one key under one layout.

    Attributes:
        current: holds the key that signs/encrypts (the name the inventory lists).
        current_kid: holds its 8-hex-digit kid.
        previous: holds the key(s) still accepted during an overlap.
        previous_kid: holds the previous key's kid (or, for a list, the kids comma-separated).
        next: holds the staged key (accepted, never signing) between apply and promote.
        next_kid: holds the staged key's kid.
        separator: ``previous`` holds a list split on this (seed 001's ``OLD_SECRET_KEYS``),
            or None for one value.
    """

    current: str
    current_kid: str
    previous: str
    previous_kid: str
    next: str
    next_kid: str
    separator: str | None = None

    @property
    def all(self) -> tuple[str, ...]:
        return (self.current, self.current_kid, self.previous, self.previous_kid, self.next,
                self.next_kid)


@dataclass(frozen=True, slots=True)
class Layout:
    """One way of spelling a key's variables (a row of the module's table).

    Attributes:
        name: what keyroll.toml's ``layout`` says.
        description: for messages and docs.
    """

    name: str
    description: str

    def problem(self, var: str) -> str | None:
        """Why ``var`` cannot be a current-key variable of this layout, or None."""
        if self.name == "seed-003" and not (var.endswith("_CURRENT") and len(var) > 8):
            return f"layout seed-003 names the current key <STEM>_CURRENT; {var!r} does not end in _CURRENT"
        return None

    def names(self, var: str) -> VarNames:
        """The variables of the key whose current value is in ``var``.

        Raises:
            ValueError: ``var`` does not fit the layout (`problem`).
        """
        problem = self.problem(var)
        if problem is not None:
            raise ValueError(problem)
        if self.name == "seed-003":
            stem = var.removesuffix("_CURRENT")
            return VarNames(var, f"{var}_KID", f"{stem}_PREVIOUS", f"{stem}_PREVIOUS_KID",
                            f"{stem}_NEXT", f"{stem}_NEXT_KID")
        if self.name == "seed-001":
            old = f"OLD_{var}S"
            return VarNames(var, f"{var}_KID", old, f"{old}_KIDS", f"{var}_NEXT", f"{var}_NEXT_KID",
                            separator=",")
        return VarNames(var, f"{var}_KID", f"{var}_PREVIOUS", f"{var}_PREVIOUS_KID", f"{var}_NEXT",
                        f"{var}_NEXT_KID")


LAYOUTS: Mapping[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("suffix", "VAR, VAR_PREVIOUS, VAR_NEXT, VAR_KID (keyroll's default)"),
        Layout("seed-004", "JWT_SECRET, JWT_SECRET_PREVIOUS (seed 004; same as suffix)"),
        Layout("seed-003", "JWT_SECRET_KEY_CURRENT, JWT_SECRET_KEY_PREVIOUS (seed 003)"),
        Layout("seed-001", "SECRET_KEY, OLD_SECRET_KEYS comma-separated (seed 001)"),
    )
}


def check_layout(name: str) -> Layout:
    """The layout called ``name``.

    Raises:
        ValueError: no such layout (the message lists them).
    """
    layout = LAYOUTS.get(name)
    if layout is None:
        raise ValueError(f"unknown layout {name!r}: use one of {', '.join(LAYOUTS)}")
    return layout


def _candidates(var: str) -> list[tuple[str, VarNames]]:
    """Every layout's names for a key read from ``var``, including seed-003's reading of a
    ``<STEM>_CURRENT`` variable given under another layout."""
    found: list[tuple[str, VarNames]] = []
    for layout in LAYOUTS.values():
        if layout.problem(var) is None:
            found.append((layout.name, layout.names(var)))
    return found


def layout_mismatch(layout: Layout, var: str, environ: Mapping[str, str]) -> str | None:
    """What is wrong when ``environ`` was written for another layout than ``layout``, or None.

    The environment is suspect when a previous or next variable of another layout is set and
    non-empty while this layout's own previous and next variables are all empty: the reader
    would hold one key and refuse every token the other one signed.
    """
    mine = layout.names(var)
    if environ.get(mine.previous, "").strip() or environ.get(mine.next, "").strip():
        return None
    for name, other in _candidates(var):
        for stray in (other.previous, other.next):
            if stray in (mine.previous, mine.next) or not environ.get(stray, "").strip():
                continue
            hint = "suffix" if name == "seed-004" else name
            return (f"{stray} is set but layout {layout.name} reads {mine.previous} and "
                    f"{mine.next}: the environment was written for layout {hint!r}; set "
                    f"layout = {hint!r} in keyroll.toml and in the reader, or rename the variable")
    return None
