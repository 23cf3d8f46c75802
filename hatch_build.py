"""Build `keyroll._cutter`, the optional C candidate cutter of ``keyroll scan``.

hatchling runs this hook for wheels and editable installs (`make venv`). It compiles
``src/keyroll/_cutter.c`` with ``$CC`` or the C compiler Python was built with; where there is
none, or the build fails, it says so and the package stays pure Python (`keyroll.recognise`
then cuts the same candidates with regular expressions, several times slower).
``KEYROLL_NO_CUTTER=1`` skips the build.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src") / "keyroll" / "_cutter.c"


def compile_cutter(root: Path, target: Path) -> bool:
    """Compile the cutter into ``target``; False (and a message on stderr) when it fails."""
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [*compiler, "-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
               str(root / SOURCE), "-o", str(target)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"keyroll: C cutter not built ({error}); keyroll scan uses its regex cutter",
              file=sys.stderr)
        return False
    if done.returncode != 0:
        print(f"keyroll: C cutter not built ({done.stderr.strip()[-300:]}); keyroll scan uses "
              "its regex cutter", file=sys.stderr)
        return False
    return True


class CutterBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Adds the compiled cutter to the wheel (or next to the sources, for editable ones)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("KEYROLL_NO_CUTTER") == "1":
            return
        root = Path(self.root)
        name = "_cutter" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        if version == "editable":  # the editable install imports src/ itself
            compile_cutter(root, root / "src" / "keyroll" / name)
            return
        target = Path(tempfile.mkdtemp(prefix="keyroll-cutter-")) / name
        if compile_cutter(root, target):
            build_data["force_include"][str(target)] = f"keyroll/{name}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
