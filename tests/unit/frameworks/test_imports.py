"""Framework integrations pull in no rotation, CLI or dashboard code, and name their extra."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("keyroll.rotation", "keyroll.cli", "keyroll.dashboard", "keyroll.targets", "typer",
             "rich", "uvicorn")

#: module → (the framework it needs, the extra that installs it)
INTEGRATIONS = {
    "keyroll.fastapi": ("starlette", "web"),
    "keyroll.flask": ("flask", "flask"),
    "keyroll.django": ("django", "django"),
}


@pytest.mark.parametrize("module", sorted(INTEGRATIONS))
def test_an_integration_imports_no_server_code(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    loaded = json.loads(done.stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


@pytest.mark.parametrize("module", sorted(INTEGRATIONS))
def test_without_the_framework_the_message_names_the_extra(module: str) -> None:
    framework, extra = INTEGRATIONS[module]
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            "from keyroll.errors import UsageError\n"
            f"try:\n    import {module}\nexcept UsageError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert f"pip install 'keyroll[{extra}]'" in done.stdout
    assert "Traceback" not in done.stderr
