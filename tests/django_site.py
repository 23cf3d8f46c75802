"""A real Django project, written by the tests into a folder, driven in a child process.

The child (``drive.py``) configures Django once (settings can be configured once per process),
then answers one JSON command per line on stdin with one JSON line on stdout, so the parent can
run keyroll's engine between two requests of the same running app (refresh without restart).
It reads keys from the keyroll store the parent rotates (``KR_STORE`` + ``KEYROLL_MASTER_KEY``)
and uses the database in ``KR_DATABASE`` (Django's ``DATABASES["default"]`` as JSON).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SETTINGS = '''
import json, os
from keyroll import FieldCipher, SecretRef, StoreKeySource
from keyroll.django import secret_keys
from keyroll.stores import open_store

STORE = open_store("sqlite:" + os.environ["KR_STORE"], create=False)
KEYROLL_KEY_SOURCE = StoreKeySource(STORE, SecretRef("dev", "jwt-access"), refresh_interval=0)
SECRET_KEY, SECRET_KEY_FALLBACKS = secret_keys(KEYROLL_KEY_SOURCE)
KEYROLL_FIELD_CIPHER = FieldCipher(StoreKeySource(STORE, SecretRef("dev", "field"),
                                                  refresh_interval=0))
KEYROLL_REQUIRED_SECRETS = json.loads(os.environ.get("KR_REQUIRED", "[]"))
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "keyroll.django", "notes"]
MIDDLEWARE = ["keyroll.django.KeyRefreshMiddleware",
              "django.contrib.sessions.middleware.SessionMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware"]
ROOT_URLCONF = "site_urls"
DATABASES = {"default": json.loads(os.environ["KR_DATABASE"])}
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

URLS = '''
from django.http import JsonResponse
from django.urls import path

def whoami(request):
    return JsonResponse({"user": request.user.username or None})

urlpatterns = [path("whoami", whoami)]
'''

MODELS = '''
from django.db import models
from keyroll.django.fields import EncryptedTextField

class Note(models.Model):
    body = EncryptedTextField()
'''

DRIVE = '''
import io, json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "site_settings"
import django
django.setup()
from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.management import call_command
from django.db import connection
from django.test import Client
from notes.models import Note

client = Client()

def handle(cmd):
    op = cmd["op"]
    if op == "setup":
        call_command("migrate", run_syncdb=True, verbosity=0)
        User.objects.create_user("alice", password="correct horse battery staple")
        return {"note": Note.objects.create(body=cmd["body"]).pk}
    if op == "login":
        return {"ok": client.login(username="alice", password="correct horse battery staple")}
    if op == "whoami":
        body = client.get("/whoami").json()
        current = settings.KEYROLL_KEY_SOURCE.snapshot().current.value.reveal()
        token = signing.dumps("probe")
        signs = signing.loads(token, key=current, fallback_keys=[]) == "probe"
        return {"user": body["user"], "current_signs": signs,
                "fallbacks": len(settings.SECRET_KEY_FALLBACKS)}
    if op == "note":
        note = Note.objects.get(pk=cmd["pk"])
        with connection.cursor() as cursor:
            cursor.execute("SELECT body FROM notes_note WHERE id = %s", [cmd["pk"]])
            stored = cursor.fetchone()[0]
        return {"same": note.body == cmd["body"], "stored": stored}
    if op in ("check", "keyroll_reencrypt"):
        out, err = io.StringIO(), io.StringIO()
        args = cmd.get("args", [])
        try:
            call_command(op, *args, stdout=out, stderr=err)
            code = 0
        except SystemExit as exc:
            code = exc.code
        except Exception as exc:
            code, err = getattr(exc, "returncode", 1), io.StringIO(f"{type(exc).__name__}: {exc}")
        return {"code": code, "out": out.getvalue(), "err": err.getvalue()}
    raise ValueError(op)

for line in sys.stdin:
    try:
        reply = handle(json.loads(line))
    except Exception as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)
'''


class DjangoSite:
    """The child process running the project. Use as a context manager."""

    def __init__(self, folder: Path, *, store: Path, master_key: bytes,
                 database: dict[str, Any], required: list[str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "notes").mkdir(exist_ok=True)
        (folder / "notes" / "__init__.py").write_text("")
        (folder / "notes" / "models.py").write_text(MODELS)
        (folder / "site_settings.py").write_text(SETTINGS)
        (folder / "site_urls.py").write_text(URLS)
        (folder / "drive.py").write_text(DRIVE)
        root = Path(__file__).resolve().parents[1]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(folder), str(root / "src")]),
            "KR_STORE": str(store),
            "KEYROLL_MASTER_KEY": base64.b64encode(master_key).decode(),
            "KR_DATABASE": json.dumps(database),
            "KR_REQUIRED": json.dumps(required or []),
        }
        self.folder = folder
        self.proc: subprocess.Popen[str] | None = None
        self.transcript: list[str] = []

    def __enter__(self) -> DjangoSite:
        self.proc = subprocess.Popen(
            [sys.executable, "drive.py"], cwd=self.folder, env=self.env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.transcript.append(self.proc.stderr.read())
        self.proc.stderr.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"the Django child died: {self.proc.stderr.read()[-2000:]}")
        self.transcript.append(line)
        reply: dict[str, Any] = json.loads(line)
        assert "error" not in reply, reply["error"]
        return reply
