"""``keyroll run``: the child sees the environment's secrets, keyroll prints none of them."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from keyroll.model import Label, SecretRef
from keyroll.stores import open_store
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll

PROBE = """
import hashlib, json, os, sys
names = ["JWT_SECRET", "JWT_SECRET_KID", "BAO_TOKEN", "KEYROLL_MASTER_KEY", "KEEP_ME"]
seen = {n: (hashlib.sha256(os.environ[n].encode()).hexdigest() if n in os.environ else None)
        for n in names}
open(sys.argv[1], "w").write(json.dumps(seen))
sys.exit(int(sys.argv[2]))
"""


def _stored(project: Path, name: str) -> str:
    with open_store("sqlite:.keyroll/store.db", base=project, create=False) as store:
        ref = SecretRef("dev", name)
        return store.read_value(ref, store.get_labels(ref)[Label.CURRENT]).reveal()


def test_run_passes_secrets_and_the_exit_code(initialised: Keyroll, project: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    monkeypatch.setenv("BAO_TOKEN", "s.keyroll-own-token-not-for-apps")
    monkeypatch.setenv("KEEP_ME", "1")
    (project / "probe.py").write_text(PROBE)
    done = initialised("run", "--env", "dev", "--", sys.executable, "probe.py", "seen.json", "7")
    assert done.code == 7
    seen = json.loads((project / "seen.json").read_text())
    value = _stored(project, "jwt-access")
    assert seen["JWT_SECRET"] == hashlib.sha256(value.encode()).hexdigest()
    assert seen["JWT_SECRET_KID"] is not None and seen["KEEP_ME"] is not None
    assert seen["BAO_TOKEN"] is None and seen["KEYROLL_MASTER_KEY"] is None
    assert_no_leak(initialised.transcript, [value])  # type: ignore[attr-defined]
    log = json.loads(initialised("audit", "log", "--json", "-n", "1").out)[0]
    assert log["action"] == "secret.run"
    assert log["evidence"]["program"] == Path(sys.executable).name
    assert "JWT_SECRET" in log["evidence"]["variables"]


def test_run_without_a_command_or_with_a_missing_one(initialised: Keyroll) -> None:
    empty = initialised("run", "--env", "dev")
    assert empty.code == 2 and "Traceback" not in empty.err
    missing = initialised("run", "--env", "dev", "--", "no-such-program-keyroll")
    assert missing.code == 127
    assert missing.err.strip() == "error: command not found: no-such-program-keyroll"
    unknown = initialised("run", "--env", "nope", "--", "true")
    assert unknown.code == 2 and len(unknown.err.strip().splitlines()) == 1


def test_options_after_the_program_belong_to_it(initialised: Keyroll, project: Path) -> None:
    (project / "probe.py").write_text("import sys; open('argv.json', 'w').write(repr(sys.argv[1:]))")
    done = initialised("run", "-e", "dev", sys.executable, "probe.py", "--env", "x", "-la")
    assert done.code == 0, done.err
    assert (project / "argv.json").read_text() == "['--env', 'x', '-la']"
