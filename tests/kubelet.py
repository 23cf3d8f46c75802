"""Publish files into a directory the way the kubelet updates a Secret volume (a test helper).

The kubelet's ``AtomicWriter`` (pkg/volume/util/atomic_writer.go) writes the new payload into a
fresh hidden directory ``..<timestamp>``, points a new symlink ``..data_tmp`` at it and renames
that over ``..data`` (the one atomic step), makes sure every visible name is a symlink
``NAME -> ..data/NAME``, removes visible names that left the payload, then deletes the old
timestamped directory. Standard library only, so an inventory hook can run it as a script:
``python tests/kubelet.py DIR`` publishes the ``KEY=value`` lines read on stdin.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path


def publish(folder: Path, files: dict[str, str]) -> None:
    """Make ``files`` the volume's content, atomically for a reader that follows ``..data``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    fresh = folder / stamp
    fresh.mkdir(mode=0o755)
    for name, text in files.items():
        path = fresh / name
        path.write_text(text)
        path.chmod(0o644)
    tmp = folder / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp)
    os.rename(tmp, data)
    for name in files:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for entry in folder.iterdir():
        if not entry.name.startswith("..") and entry.name not in files and entry.is_symlink():
            entry.unlink()
    if old is not None and old != stamp:
        shutil.rmtree(folder / old, ignore_errors=True)


def _parse(text: str) -> dict[str, str]:
    """The dotenv keyroll renders (bare or double-quoted values, one a line)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
        out[key] = value
    return out


if __name__ == "__main__":
    publish(Path(sys.argv[1]), _parse(sys.stdin.read()))
