"""The planted-value sweep (issue 10 §4): every command, every hook kind, every output grepped.

Planted: a provider token with ``$``, ``"`` and ``\\`` in it (dev and staging differ), a short
value imported with ``--allow-short``, the master key in ``.keyroll/master.key``, and a JWT key
that a rotation retires (destroyed) while a copy of the old ``.env`` stays on disk. The hooks
are real commands that print every value they can reach (the rendered .env on stdin and on
disk, the stale copy, another environment's export, the master key file) in every spelling:
raw, base64, base64url, hex, URL-encoded, dotenv-escaped, JSON-escaped, shell-quoted. Then the
journal, the rotation records, the CLI output, the reports and every dashboard page are grepped
for every spelling of every value ever held.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keyroll.cli.exitcodes import WAITING
from keyroll.inventory import load_inventory
from keyroll.model import SecretRef
from keyroll.stores import open_store
from keyroll.stores.base import Store
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll
from tests.unit.dashboard.conftest import TestClient

#: Printed by every command hook: each value of each file in every spelling §4 lists.
LEAK_ALL = r'''
import base64, json, shlex, subprocess, sys
from pathlib import Path
from urllib.parse import quote, quote_plus
from keyroll.cli.secrets_cmd import parse_dotenv

source, group = sys.argv[1], sys.argv[2]
if source == "stdin":
    text = sys.stdin.read()
elif source == "key":
    text = "KEY=" + Path(".keyroll/master.key").read_text().strip()
    raw = base64.b64decode(text[4:])
    print("decoded:", base64.urlsafe_b64encode(raw).decode(), raw.hex())
else:
    text = Path(source).read_text()
values = [v for k, v in parse_dotenv(text).items() if not k.endswith("_KID")]
for value in values:
    raw = value.encode()
    if group == "escaped":
        print("raw:", value)
        print("json:", json.dumps(value), json.dumps({"v": value}))
        print("shell:", shlex.quote(value))
        print("printf-q:", subprocess.run(["bash", "-c", 'printf %q "$1"', "_", value],
                                          capture_output=True, text=True).stdout)
        bs = chr(92)
        escaped = value.replace(bs, bs * 2).replace(chr(34), bs + chr(34)).replace("$", bs + "$")
        print("dotenv: X=" + chr(34) + escaped + chr(34))
    else:
        print("b64:", base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode())
        print("hex:", raw.hex(), raw.hex().upper())
        print("url:", quote(value, safe=""), quote_plus(value))
'''

PROVIDER_DEV = 'tok$en"with\\back-slash-dev-9f8e7d6c5b'
PROVIDER_STAGING = "st$g'in\"g\\value-a1b2c3d4e5f6"
SHORT = "Pq7$x"

#: What a careless deploy script does: print the files it reads.
LEAK_SH = """cat .env old.env .keyroll/master.key
base64 .keyroll/master.key
printf '%q\\n' "$(cat .keyroll/master.key)"
while IFS= read -r line; do printf '%q\\n' "${line#*=}"; done < .env
"""


def _inventory(python: str, port: int) -> str:
    def leak(*sources: str) -> str:
        return ",\n".join(
            f'  {{ run = ["{python}", "leakall.py", "{source}", "{group}"]'
            + (", stdin_dotenv = true }" if source == "stdin" else " }")
            for source in sources for group in ("escaped", "encoded")
        ) + ","

    return f"""
project = "sweep"

[environments.dev]
auto = true

[environments.staging]
drill = true

[classes.jwt-access]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "medium"
blast_radius = "sessions"
owner = "auth"
environments = ["dev", "staging"]
overlap = {{ token_ttl = "15m", margin = "1h" }}
hooks.on_promote = [
  {{ write_dotenv = ".env" }},
  {{ run = "[ -f old.env ] || cp .env old.env", shell = true }},
{leak("stdin", ".env", "key")}
  {{ run = ["bash", "leak.sh"] }},
]
hooks.verify = [
  {{ http = "http://127.0.0.1:{port}/dump" }},
{leak("old.env", "staging.env")}
]
hooks.revoke = [
{leak("old.env")}
  {{ run = "cat old.env staging.env", shell = true }},
]

[classes.provider-token]
kind = "api-key"
env_vars = ["PROVIDER_TOKEN"]
cadence_days = 90
tier = "high"
blast_radius = "payments"
owner = "payments"
environments = ["dev", "staging"]

[classes.pin]
kind = "opaque"
env_vars = ["LEGACY_PIN"]
cadence_days = 365
tier = "low"
blast_radius = "kiosk"
owner = "ops"
environments = ["dev"]
"""


@pytest.fixture
def dump_server(project: Path) -> Iterator[int]:
    """An HTTP check that answers with every .env file on disk (what a leaky /health does)."""

    class Dump(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = "".join(
                p.read_text() for p in (project / ".env", project / "old.env") if p.exists()
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Dump)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def _open(project: Path) -> Store:
    inventory = load_inventory(project / "keyroll.toml")
    return open_store(inventory.store.url, base=project)


def _all_values(project: Path, seen: set[str]) -> None:
    """Every value the store still holds (read directly, never through the CLI)."""
    with _open(project) as store:
        for ref in store.list_secrets():
            for version in store.list_versions(ref):
                if not version.destroyed:
                    seen.add(store.read_value(ref, version.number).reveal())


def test_planted_values_appear_nowhere(
    initialised: Keyroll, project: Path, monkeypatch: pytest.MonkeyPatch, dump_server: int
) -> None:
    keyroll = initialised
    (project / "keyroll.toml").write_text(_inventory(sys.executable, dump_server))
    (project / "leakall.py").write_text(LEAK_ALL)
    (project / "leak.sh").write_text(LEAK_SH)
    monkeypatch.setenv("KEYROLL_NOW", "2026-11-22T02:00:00+00:00")
    master = (project / ".keyroll" / "master.key").read_text().strip()
    planted: set[str] = {PROVIDER_DEV, PROVIDER_STAGING, SHORT, master}

    # values with $ " \ from a .env file (dev) and from stdin (staging)
    (project / "legacy.env").write_text(
        'PROVIDER_TOKEN="tok\\$en\\"with\\\\back-slash-dev-9f8e7d6c5b"\n'
    )
    assert keyroll("import", "--env", "dev", "--file", "legacy.env").code == 0
    (project / "legacy.env").unlink()
    _stdin(monkeypatch, PROVIDER_STAGING + "\n")
    assert keyroll("import", "provider-token", "--env", "staging").code == 0

    # a short value: refused, then accepted with --allow-short
    (project / "pin.env").write_text(f'LEGACY_PIN="{SHORT.replace("$", chr(92) + "$")}"\n')
    refused = keyroll("import", "--env", "dev", "--file", "pin.env")
    assert refused.code == 2 and "--allow-short" in refused.err
    assert keyroll("import", "--env", "dev", "--file", "pin.env", "--allow-short").code == 0
    (project / "pin.env").unlink()

    for env in ("dev", "staging"):
        assert keyroll("generate", "jwt-access", "--env", env).code == 0
    _all_values(project, planted)
    # another environment's values on disk, where a hook can read them
    assert keyroll("export", "--env", "staging", "-o", "staging.env").code == 0

    # a rotation with every hook kind; its retire destroys version 1, still in old.env
    rotated = keyroll("rotate", "jwt-access", "--env", "dev")
    assert rotated.code == WAITING, rotated.err  # parked in its overlap
    _all_values(project, planted)
    assert keyroll("advance", "--now", "2026-11-23T12:00:00Z").code == 0
    with _open(project) as store:
        versions = store.list_versions(SecretRef("dev", "jwt-access"))
        assert versions[0].destroyed
    assert "JWT_SECRET=" in (project / "old.env").read_text()  # version 1, now destroyed

    # an incident rotation (revoke hooks) while the destroyed value sits in old.env
    monkeypatch.setenv("KEYROLL_NOW", "2026-11-24T02:00:00+00:00")
    incident = keyroll("rotate", "jwt-access", "--env", "dev", "--incident")
    assert incident.code == 0, incident.err
    _all_values(project, planted)
    drill = keyroll("rotate", "jwt-access", "--env", "staging")
    assert drill.code == WAITING, drill.err  # parked in its overlap
    _all_values(project, planted)
    with _open(project) as store:
        staging = [r for r in store.list_rotations() if r.ref.environment == "staging"]
    keyroll("rollback", staging[0].id, "--json")  # a rotation back, or refused: no value
    keyroll("notify")
    keyroll("notify", "--json")

    # every reading command
    reports = project / "reports"
    reports.mkdir()
    records: list[str] = []
    with _open(project) as store:
        rotations = store.list_rotations()
        records += [json.dumps(r.body, default=str) for r in rotations]
        journal = [entry.payload for entry in store.audit_entries()]
        bookkeeping = [store.get_meta(k) or "" for k in store.list_meta()]
    assert len(rotations) == 3
    for rotation in rotations:
        assert keyroll("report", "drill", rotation.id).code == 0
        assert keyroll("report", "drill", rotation.id, "-o", str(reports / rotation.id)).code == 0
        assert keyroll("report", "drill", rotation.id, "--json").code == 0
    for args in (
        ("status",), ("status", "--json"), ("rotations", "--all"), ("rotations", "--all", "--json"),
        ("get", "jwt-access", "--env", "dev"), ("get", "provider-token", "--env", "staging"),
        ("get", "pin", "--env", "dev", "--json"), ("audit", "log"), ("audit", "log", "--json"),
        ("audit", "verify"), ("status", "--env", "staging"),
        ("report", "checklist", "jwt-access", "--env", "dev"), ("inventory", "check"),
        ("report", "checklist", "jwt-access", "--env", "dev", "--json"),
        ("get", "jwt-access", "--env", "dev", "--version", "1"),
    ):
        keyroll(*args)

    # every dashboard page
    from keyroll.dashboard import create_app

    with _open(project) as store:
        app = create_app(lambda: nullcontext(store), load_inventory(project / "keyroll.toml"))
        client = TestClient(app)
        paths = ["/", "/?env=dev", "/?env=staging", "/rotations", "/rotations?active=true",
                 "/audit?limit=1000", "/api/audit?limit=1000", "/api/status", "/api/rotations",
                 "/metrics", "/healthz"]
        for env, name in (("dev", "jwt-access"), ("staging", "jwt-access"),
                          ("dev", "provider-token"), ("staging", "provider-token"), ("dev", "pin")):
            paths += [f"/secrets/{env}/{name}", f"/api/secrets/{env}/{name}"]
        paths += [p for r in rotations for p in (f"/rotations/{r.id}", f"/api/rotations/{r.id}")]
        pages = [client.get(path).text for path in paths]

    # the hooks did print the values (so the grep below means something)
    evidence = "\n".join(records + journal)
    for marker in ("raw:", "json:", "shell:", "printf-q:", "dotenv:", "b64:", "hex:", "url:",
                   "decoded:"):
        assert evidence.count(marker) >= 3, marker
    assert '"output": "\\u2026' not in evidence  # no output was cut: all of it is grepped
    assert len(planted) >= 9

    outputs = {
        "the CLI output": keyroll.transcript,  # type: ignore[attr-defined]
        "the journal": journal,
        "a rotation record": records,
        "a report": [p.read_text() for p in reports.iterdir()],
        "a dashboard page": pages,
        "the bookkeeping": bookkeeping,
    }
    for where, texts in outputs.items():
        assert_no_leak(texts, sorted(planted), where=where)
