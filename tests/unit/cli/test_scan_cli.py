"""``keyroll scan`` on a corpus built at test time: recall 100%, no false positive, every
source (files, git history with deleted files, the staged index, stdin), baseline mode, the
pre-commit hook in a real ``git commit``, and schema-valid ``--json`` / ``--sarif``."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from keyroll.cli.exitcodes import WAITING
from keyroll.stores import open_store
from tests.leaks import assert_no_leak
from tests.scan_corpus import Planted, Value, build_store, git, plant_lines
from tests.unit.cli.conftest import Keyroll

SCHEMAS = Path(__file__).parents[2] / "vectors" / "scan"
KEYROLL = str(Path(sys.executable).parent / "keyroll")


def _store_values(project: Path) -> list[Value]:
    with open_store(f"sqlite:{project / '.keyroll' / 'store.db'}", create=False) as store:
        return build_store(store)


@pytest.fixture
def corpus(initialised: Keyroll, project: Path) -> tuple[list[Value], list[Planted]]:
    """A git repository: a current file, a file deleted in history, a log file."""
    values = _store_values(project)
    rng = random.Random(11)
    git(project, "init", "-q", "-b", "main")
    planted: list[Planted] = []
    (project / "config").mkdir()
    lines, where = plant_lines(values, "config/settings.txt", rng, noise_lines=3000)
    (project / "config" / "settings.txt").write_text("\n".join(lines) + "\n")
    planted += where
    old, where_old = plant_lines(values, "old/leaked.env.txt", rng, noise_lines=1000)
    (project / "old").mkdir()
    (project / "old" / "leaked.env.txt").write_text("\n".join(old) + "\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "settings and a leak")
    git(project, "rm", "-q", "old/leaked.env.txt")
    git(project, "commit", "-q", "-m", "remove the leak")
    planted += [Planted(p.path, p.line, p.value, "history:" + p.form) for p in where_old]
    log, where_log = plant_lines(values, "logs/app.log", rng, noise_lines=2000)
    (project / "logs").mkdir()
    (project / "logs" / "app.log").write_text("\n".join(log) + "\n")
    planted += where_log
    return values, planted


def _key(path: str, line: int, name: str, version: int) -> tuple[str, int, str, int]:
    return path, line, name, version


def _check(found: list[dict[str, object]], planted: list[Planted]) -> None:
    expected = {_key(p.path, p.line, p.value.name, p.value.version) for p in planted}
    got = {_key(str(f["path"]), int(str(f["line"])), str(f["class"]), int(str(f["version"])))
           for f in found}
    missed = sorted(p.form + f" {p.value.state} {p.value.name}" for p in planted
                    if _key(p.path, p.line, p.value.name, p.value.version) not in got)
    assert not missed, f"recall below 100%: {len(missed)} missed: {missed[:20]}"
    assert got <= expected, f"false positives: {sorted(got - expected)[:10]}"
    states = {(p.value.name, p.value.version): p.value.state for p in planted}
    assert all(states[(str(f["class"]), int(str(f["version"])))] == f["state"] for f in found)


def test_tree_scan_finds_every_form_of_every_state_and_nothing_else(
        corpus: tuple[list[Value], list[Planted]], initialised: Keyroll) -> None:
    values, planted = corpus
    result = initialised("scan", "--json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    current = [p for p in planted if not p.form.startswith("history:")]
    _check(doc["findings"], current)
    assert doc["summary"]["retired"] > 0 and doc["summary"]["current"] > 0
    assert "--incident" in result.err
    assert_no_leak([result.out, result.err], [v.text for v in values], where="scan output")


def test_git_history_finds_deleted_files_with_their_commit(
        corpus: tuple[list[Value], list[Planted]], initialised: Keyroll, project: Path) -> None:
    _values, planted = corpus
    result = initialised("scan", "--git", "--json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    committed = [p for p in planted if p.path != "logs/app.log"]
    _check(doc["findings"], [Planted(p.path, p.line, p.value, p.form) for p in committed])
    first = git(project, "rev-list", "--max-parents=0", "HEAD").strip()
    assert {f["commit"] for f in doc["findings"]} == {first}
    head = git(project, "rev-parse", "HEAD").strip()
    assert json.loads(initialised("scan", "--git", "--since", head, "--json").out)["findings"] == []


def test_stdin_log_and_baseline_mode_without_the_store(
        corpus: tuple[list[Value], list[Planted]], initialised: Keyroll, project: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    values, planted = corpus
    assert initialised("scan", "--export-baseline", ".keyroll-baseline.json").code == 0
    baseline = (project / ".keyroll-baseline.json").read_text()
    assert_no_leak([baseline], [v.text for v in values], where="the baseline")
    (project / ".keyroll" / "master.key").rename(project / "elsewhere.key")  # no store now
    log = (project / "logs" / "app.log").read_bytes()
    done = subprocess.run([KEYROLL, "scan", "--json", "-"], input=log, capture_output=True,
                          cwd=project, check=False, timeout=300,
                          env={**os.environ, "KEYROLL_MASTER_KEY": ""})
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["summary"]["index"] == "baseline"
    long_enough = [p for p in planted if p.path == "logs/app.log" and len(p.value.text) >= 16]
    _check(doc["findings"], [Planted("<stdin>", p.line, p.value, p.form) for p in long_enough])


def test_sarif_and_json_match_their_schemas(
        corpus: tuple[list[Value], list[Planted]], initialised: Keyroll) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    sarif = initialised("scan", "--sarif", "config")
    assert sarif.code == 1
    doc = json.loads(sarif.out)
    jsonschema.validate(doc, json.loads((SCHEMAS / "sarif-2.1.0-subset.json").read_text()))
    assert doc["runs"][0]["results"]
    plain = initialised("scan", "--json", "config")
    jsonschema.validate(json.loads(plain.out),
                        json.loads((SCHEMAS / "keyroll-scan.schema.json").read_text()))


def test_bad_input_is_one_line_exit_2(initialised: Keyroll, project: Path) -> None:
    for args in (["--json", "--sarif"], ["--since", "HEAD"], ["--dsn", "postgresql://x"],
                 ["--baseline", "missing.json"], ["nowhere/"], ["--git", "--staged"]):
        result = initialised("scan", *args)
        assert result.code == 2, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert "Traceback" not in result.err
    (project / "bad.json").write_text('{"format": "other"}')
    assert initialised("scan", "--baseline", "bad.json").code == 2


def _hooked_repo(project: Path) -> Path:
    repo = project / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    hook = repo / ".git" / "hooks" / "pre-commit"
    entry = _pre_commit_entry()
    hook.write_text(f"#!/bin/sh\nexec {KEYROLL} {entry}\n")
    hook.chmod(0o755)
    return repo


def _pre_commit_entry() -> str:
    text = (Path(__file__).parents[3] / ".pre-commit-hooks.yaml").read_text()
    assert "id: keyroll-scan" in text and "language: python" in text
    entry = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.strip().startswith("entry:"))
    assert entry == "keyroll scan --staged"
    return entry.removeprefix("keyroll ")


def _commit(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    git(repo, "add", "-A")
    return subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "change"],
                          capture_output=True, text=True, check=False, timeout=300,
                          env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x.invalid"})


@pytest.mark.parametrize("mode", ["store", "baseline"])
def test_pre_commit_hook_blocks_a_commit_adding_a_current_value(
        initialised: Keyroll, project: Path, mode: str) -> None:
    values = _store_values(project)
    current = next(v for v in values if v.state == "current" and len(v.text) >= 16)
    retired = next(v for v in values if v.state == "retired" and "\n" not in v.text)
    repo = _hooked_repo(project)
    env = {**os.environ, "KEYROLL_CONFIG": str(project / "keyroll.toml")}
    if mode == "baseline":
        assert initialised("scan", "--export-baseline", str(repo / ".keyroll-baseline.json")
                           ).code == 0
        env = {**os.environ, "KEYROLL_CONFIG": str(project / "nothing.toml")}  # no store here
    (repo / "README").write_text("nothing secret\n")
    ok = _commit(repo, env)
    assert ok.returncode == 0, ok.stderr
    (repo / "settings.py").write_text(f"OLD = {retired.text!r}\n")
    assert _commit(repo, env).returncode == 0  # retired only: allowed
    (repo / "settings.py").write_text(f"API_KEY = {json.dumps(current.text)}\n")
    blocked = _commit(repo, env)
    assert blocked.returncode != 0
    assert f"keyroll rotate {current.name} --env {current.environment} --incident" in blocked.stderr
    assert "settings.py:1" in blocked.stdout + blocked.stderr  # git sends hook output to stderr
    assert git(repo, "log", "--oneline").count("\n") == 2
    assert_no_leak([blocked.stdout, blocked.stderr], [v.text for v in values])


def test_every_scan_is_journaled_with_counts_only(
        corpus: tuple[list[Value], list[Planted]], initialised: Keyroll) -> None:
    values, _ = corpus
    initialised("scan", "config")
    log = initialised("audit", "log", "--json")
    records = [r for r in json.loads(log.out) if r["action"] == "scan.run"]
    assert records and records[-1]["evidence"]["findings"] > 0
    assert records[-1]["outcome"] == "found-live"
    assert_no_leak([log.out], [v.text for v in values], where="the journal")


def test_scan_verify_hook_puts_its_evidence_in_the_drill_report(
        initialised: Keyroll, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = project / "keyroll.toml"
    inventory.write_text(inventory.read_text().replace(
        "hooks.verify = [\n", 'hooks.verify = [\n  { scan = ["."], git = true, environments = ["dev"] },\n'))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "inventory")
    monkeypatch.setenv("KEYROLL_NOW", "2026-11-22T02:00:00+00:00")
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    rotated = initialised("rotate", "jwt-access", "--env", "dev")
    assert rotated.code == WAITING, rotated.err  # parked in its overlap
    assert "no current or pending value found" in rotated.out
    rid = json.loads(initialised("rotations", "--all", "--json").out)[-1]["id"]
    drill = initialised("report", "drill", rid)
    assert "scan . and git history" in drill.out
    assert "no current or pending value found" in drill.out


def test_init_ignores_every_write_dotenv_target_and_export_warns_when_tracked(
        keyroll: Keyroll, project: Path) -> None:
    assert keyroll("init").code == 0
    inventory = project / "keyroll.toml"
    inventory.write_text(inventory.read_text().replace(
        '{ write_dotenv = ".env", environments = ["dev"] }',
        '{ write_dotenv = "deploy/app.env", environments = ["dev"] }'))
    (project / ".keyroll" / "store.db").unlink()
    assert keyroll("init").code == 0
    assert "/deploy/app.env" in (project / ".gitignore").read_text().splitlines()
    git(project, "init", "-q", "-b", "main")
    (project / "deploy").mkdir()
    (project / "deploy" / "app.env").write_text("X=1\n")
    git(project, "add", "-f", "deploy/app.env")
    assert keyroll("generate", "jwt-access", "--env", "dev").code == 0
    exported = keyroll("export", "--env", "dev", "--format", "dotenv", "-o", "deploy/app.env")
    assert exported.code == 0
    assert "is tracked by git" in exported.err
