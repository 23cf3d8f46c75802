"""The layer rules of ARCHITECTURE.md, checked on the import graph of ``src/keyroll``.

Every import counts, also the lazy ones inside functions: a lazy import is still a dependency
(it only defers the cost). A failure names the module, what it imports and the rule it breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: Core modules that import nothing but each other (and the standard library).
CORE_LEAVES = {
    "errors", "model", "jwk", "generate", "durations", "inventory", "escaping", "spellings",
    "recognise", "scrub", "files", "urls", "net", "layout", "dotenv", "_compat", "window",
    "issued", "tlscert", "_cutter", "recognise_tag",
}
#: Core modules that also read the store contract and the rotation record (a leaf).
CORE_SERVICES = {"audit", "audit_check", "status", "render", "reports", "migrate", "calendar",
                 "escrow", "rehearsal"}
#: Framework integrations (top-level modules and the ``django`` package): they import their
#: framework, the runtime and core, never the engine, the CLI or the dashboard.
INTEGRATIONS = {"fastapi", "flask"}
#: What a screen is drawn with: the engine (everything but cli/, dashboard/, runtime/) never
#: imports them; it emits events that the CLI and the dashboard observe.
SCREEN = ("typer", "rich", "fastapi", "starlette", "uvicorn", "jinja2")


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "keyroll":
                found |= {f"keyroll.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


#: every module: its source, or for a compiled one (``_cutter.c``) the stub that types it
GRAPH = {_module(p): _imports(p) for p in sorted((SRC / "keyroll").rglob("*.py*"))
         if p.suffix == ".py" or (p.suffix == ".pyi" and not p.with_suffix(".py").exists())}


def _area(module: str) -> str:
    """``core`` for a top-level module, else the first package under keyroll (``stores``…);
    ``stores.base`` and ``rotation.record`` are their own (the contract and the record)."""
    parts = module.split(".")
    if parts[0] != "keyroll":
        return "third-party"
    if module in ("keyroll.stores.base", "keyroll.rotation.record"):
        return module.removeprefix("keyroll.")
    if len(parts) == 1:
        return "keyroll"
    return parts[1] if (SRC / "keyroll" / parts[1]).is_dir() else "core"


def _violations(sources: set[str], allowed: set[str]) -> list[str]:
    bad = []
    for module in sorted(sources):
        for target in sorted(GRAPH[module]):
            if target.startswith("keyroll") and _area(target) not in allowed \
                    and _area(target) != _area(module):
                bad.append(f"{module} imports {target}")
    return bad


def _in(area: str) -> set[str]:
    return {m for m in GRAPH if _area(m) == area}


def test_the_graph_is_read() -> None:
    assert "keyroll.rotation.engine" in GRAPH
    assert "keyroll.stores.base" in GRAPH["keyroll.rotation.engine"]


def test_core_leaves_import_only_core_leaves() -> None:
    bad = []
    for name in sorted(CORE_LEAVES):
        for target in sorted(GRAPH[f"keyroll.{name}"]):
            if target.startswith("keyroll") and target.removeprefix("keyroll.") not in CORE_LEAVES:
                bad.append(f"keyroll.{name} imports {target}")
    assert bad == []


def test_core_is_leaves_services_and_integrations() -> None:
    assert {m.removeprefix("keyroll.") for m in _in("core")} == (
        CORE_LEAVES | CORE_SERVICES | INTEGRATIONS)


def test_framework_integrations_import_the_runtime_and_core_only() -> None:
    allowed = {"core", "stores.base", "runtime", "reencrypt"}
    modules = {f"keyroll.{name}" for name in INTEGRATIONS} | _in("django")
    bad = [f"{m} imports {t}" for m in sorted(modules) for t in sorted(GRAPH[m])
           if t.startswith("keyroll") and _area(t) not in allowed and _area(t) != _area(m)
           and t.removeprefix("keyroll.") not in CORE_LEAVES]
    assert bad == []


def test_notify_reads_events_and_signs_with_the_runtime() -> None:
    # an engine observer: it reads the engine's events and the record, never drives the engine
    allowed = {"core", "stores.base", "rotation.record", "runtime"}
    bad = [v for v in _violations(_in("notify"), allowed)
           if not v.endswith(" imports keyroll.rotation.events")]
    assert bad == []


def test_scan_imports_the_contract_the_recogniser_and_the_redactor_only() -> None:
    assert _violations(_in("scan"), {"core", "stores.base", "runtime"}) == []


def test_core_services_import_nothing_above_the_contract_and_the_record() -> None:
    bad = []
    for name in sorted(CORE_SERVICES):
        for target in sorted(GRAPH[f"keyroll.{name}"]):
            if not target.startswith("keyroll"):
                continue
            if target.removeprefix("keyroll.") in CORE_LEAVES | CORE_SERVICES:
                continue
            if target not in ("keyroll.stores.base", "keyroll.rotation.record"):
                bad.append(f"keyroll.{name} imports {target}")
    assert bad == []


def test_the_contract_and_the_record_are_leaves() -> None:
    assert _violations({"keyroll.stores.base"}, {"core"}) == []
    assert _violations({"keyroll.rotation.record"}, {"core", "stores.base"}) == []


def test_store_backends_import_only_the_contract_and_core() -> None:
    assert _violations(_in("stores"), {"core", "stores.base"}) == []


def test_runtime_imports_no_engine_cli_or_dashboard() -> None:
    # the read side of the stores only: an app that uses key rings pulls in no server code
    # (`keyroll.stores` is `open_store`, which the pydantic-settings source calls with a URL)
    bad = [v for v in _violations(_in("runtime"), {"core", "stores.base", "keyroll"})
           if not v.endswith(" imports keyroll.stores")]
    assert bad == []


def test_targets_know_nothing_of_the_engine_or_the_stores() -> None:
    assert _violations(_in("targets"), {"core"}) == []


def test_reencrypt_imports_no_rotation_cli_or_dashboard() -> None:
    allowed = {"core", "stores.base", "runtime", "targets"}
    assert _violations(_in("reencrypt"), allowed) == []


def test_rotation_imports_no_cli_or_dashboard() -> None:
    allowed = {"core", "stores.base", "rotation.record", "stores", "runtime", "targets",
               "reencrypt", "scan"}  # scan: the `scan` verify hook runs in-process
    assert _violations(_in("rotation"), allowed) == []


@pytest.mark.parametrize("area", ["core", "stores", "stores.base", "rotation", "rotation.record",
                                  "reencrypt", "targets", "scan", "notify"])
def test_the_engine_imports_no_screen(area: str) -> None:
    integrations = {f"keyroll.{name}" for name in INTEGRATIONS}
    bad = [f"{m} imports {t}" for m in sorted(_in(area) - integrations) for t in sorted(GRAPH[m])
           if t.split(".")[0] in SCREEN]
    assert bad == []


#: Optional drivers whose errors one adapter translates (`keyroll.targets.mysql._driver`…):
#: nobody else imports them, so nothing above the adapter can see one of their exceptions.
ONE_ADAPTER = {"pymysql": {"keyroll.targets.mysql._driver"}}


@pytest.mark.parametrize("driver", sorted(ONE_ADAPTER))
def test_a_driver_is_imported_by_its_adapter_only(driver: str) -> None:
    importers = {m for m, targets in GRAPH.items()
                 if any(t == driver or t.startswith(f"{driver}.") for t in targets)}
    assert importers == ONE_ADAPTER[driver]


def test_the_mysql_target_and_strategy_sit_in_their_layers() -> None:
    mysql = {m for m in GRAPH if m.startswith("keyroll.targets.mysql")}
    assert {"keyroll.targets.mysql.accounts", "keyroll.targets.mysql.grants",
            "keyroll.targets.mysql.statements", "keyroll.targets.mysql.server"} <= mysql
    assert _violations(mysql, {"core"}) == []  # core only, as every target
    assert "keyroll.targets.mysql" in GRAPH["keyroll.rotation.strategies.mysql_user"]


#: Optional dependencies (behind extras) of the engine's side: imported inside functions only,
#: so a rotation of a JWT key needs none of them installed (`keyroll[rabbitmq]` is httpx + pika).
OPTIONAL = ("psycopg", "redis", "hvac", "httpx", "pika", "kubernetes", "requests")


def _top_level_imports(path: Path) -> set[str]:
    """Imports in the module body itself (not in functions, not under ``if TYPE_CHECKING``)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("area", ["targets", "rotation"])
def test_server_drivers_are_imported_lazily(area: str) -> None:
    folder = SRC / "keyroll" / area
    bad = [f"{_module(p)} imports {name} at import time" for p in sorted(folder.rglob("*.py"))
           for name in sorted(_top_level_imports(p)) if name.split(".")[0] in OPTIONAL]
    assert bad == []


def test_the_rabbitmq_kind_sits_where_the_other_server_kinds_do() -> None:
    # the adapter is a target (core only below it), the strategy part of the engine
    assert "keyroll.targets.rabbitmq" in _in("targets")
    assert "keyroll.rotation.strategies.rabbitmq_user" in _in("rotation")
    assert "keyroll.targets.rabbitmq" in GRAPH["keyroll.rotation.strategies.rabbitmq_user"]
