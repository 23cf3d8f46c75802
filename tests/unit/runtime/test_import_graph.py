"""The runtime pulls in no rotation, CLI, dashboard or server code (DESIGN.md, layering)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.test_exported_members import MODULES

FORBIDDEN = (
    "keyroll.rotation",
    "keyroll.cli",
    "keyroll.dashboard",
    "keyroll.targets",
    "typer",
    "rich",
    "fastapi",
    "starlette",
    "uvicorn",
)

RUNTIME = MODULES  # every module an app may import


def loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("module", RUNTIME)
def test_runtime_imports_no_server_code(module: str) -> None:
    loaded = loaded_after_import(module)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == [], f"importing {module} loads {bad}"


def test_import_keyroll_stays_light() -> None:
    loaded = loaded_after_import("keyroll")
    heavy = [m for m in loaded if m.split(".")[0] in {"pydantic_settings", "sqlalchemy", "structlog"}]
    assert heavy == []
