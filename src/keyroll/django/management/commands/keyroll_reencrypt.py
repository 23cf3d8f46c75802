"""``manage.py keyroll_reencrypt``: rewrite every `EncryptedTextField` under the current key.

Runs keyroll's resumable re-encryption job (`keyroll.reencrypt.job.Reencryptor`) on the
Django database: keyset windows, compare-and-set batches, checkpoints in the keyroll store (a
killed run resumes), rows the app writes meanwhile left alone. The columns, their table, key
and AAD context come from the models; the connection from ``DATABASES``. The cipher's key
source must be a `StoreKeySource` (checkpoints live in the store). Output: counts and kids,
never a value. Exit 2 for bad input, 1 when rows are left.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from keyroll.django.fields import DEFAULT_SETTING, encrypted_fields
from keyroll.errors import KeyrollError, UsageError
from keyroll.inventory import EncryptionColumn
from keyroll.reencrypt.job import Reencryptor
from keyroll.runtime.keysource import KeySource, LazyKeySource, StoreKeySource

_DSN_VAR = "KEYROLL_DJANGO_DATABASE"


def _dsn(alias: str) -> str:
    """A DSN keyroll's re-encryption adapters open, from Django's connection settings."""
    connection = connections[alias]
    conf = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}" if str(conf["NAME"]).startswith("/") else \
            f"sqlite:{conf['NAME']}"
    if connection.vendor == "postgresql":
        from psycopg.conninfo import make_conninfo

        params = {k: conf.get(d) for k, d in (("host", "HOST"), ("port", "PORT"), ("dbname", "NAME"),
                                              ("user", "USER"), ("password", "PASSWORD"))}
        return make_conninfo("", **{k: v for k, v in params.items() if v})
    raise UsageError(f"database {alias!r} is {connection.vendor}: keyroll_reencrypt handles "
                     "SQLite and PostgreSQL")


def _store_source(source: KeySource) -> StoreKeySource:
    inner = source.inner if isinstance(source, LazyKeySource) else source
    if not isinstance(inner, StoreKeySource):
        raise UsageError("keyroll_reencrypt needs a FieldCipher on a StoreKeySource: the job "
                         "keeps its checkpoints in the keyroll store")
    return inner


class Command(BaseCommand):
    help = "Re-encrypt every keyroll EncryptedTextField under the current key (resumable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", help="the DATABASES alias")
        parser.add_argument("--cipher", default=DEFAULT_SETTING,
                            help="the setting holding the FieldCipher")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = self._run(options)
        except KeyrollError as exc:
            raise CommandError(str(exc), returncode=getattr(exc, "exit_code", 1)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report.to_json(), sort_keys=True))
        else:
            for column in report.columns:
                self.stdout.write(f"{column.label}: rewritten {column.rewritten}, failed "
                                  f"{column.failed}, remaining {column.remaining}")
            self.stdout.write(f"current kid {report.current_kid}: "
                              + ("done" if report.ok else "rows left"))
        if not report.ok:
            raise CommandError("some rows are not under the current key yet; run it again",
                               returncode=1)

    def _run(self, options: dict[str, Any]) -> Any:
        fields = [f for f in encrypted_fields() if f.cipher_setting == options["cipher"]]
        if not fields:
            raise UsageError(f"no EncryptedTextField uses settings.{options['cipher']}")
        cipher = fields[0].cipher
        source = _store_source(cipher.source)
        columns = [
            EncryptionColumn(table=f.model._meta.db_table, key=f.model._meta.pk.column,
                             column=str(f.column), context=",".join(f.context),
                             database_env=_DSN_VAR)
            for f in fields
        ]
        job = Reencryptor(cipher, store=source.store, ref=source.ref,
                          batch_size=options["batch_size"],
                          environ={_DSN_VAR: _dsn(options["database"])})
        return job.run(columns, dry_run=options["dry_run"])
