"""``keyroll scan``: find values keyroll holds or held, in files, git history, stdin, tables."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from keyroll.cli.context import STDIN, AppContext
from keyroll.cli.output import err, escape, out, print_json
from keyroll.errors import KeyrollError, UsageError
from keyroll.files import write_private
from keyroll.model import utcnow
from keyroll.scan import (
    Matcher,
    ScanIndex,
    ScanResult,
    ValueState,
    export_baseline,
    journal_scan,
    load_baseline,
    parse_baseline,
    scan_items,
)
from keyroll.scan.sources import Item, Skipped, git_history, query_rows, staged, stdin_text, tree

__all__ = ["DEFAULT_BASELINE", "register"]

#: Where ``--export-baseline`` is conventionally written and where a scan without a store
#: looks for one (repository root or current folder): commit it.
DEFAULT_BASELINE = ".keyroll-baseline.json"


class FailOn(StrEnum):
    retired = "retired"


def _index(app: AppContext, baseline: Path | None, root: Path) -> tuple[ScanIndex, bool]:
    """The index to scan with and whether it came from the store (so the scan is journaled)."""
    if baseline is not None:
        if str(baseline) == STDIN:
            return parse_baseline(app.read_input(baseline, "--baseline"), "<stdin>"), False
        return load_baseline(baseline), False
    try:
        return ScanIndex.from_store(app.store), True
    except KeyrollError as exc:
        for folder in dict.fromkeys((root, Path.cwd())):
            candidate = folder / DEFAULT_BASELINE
            if candidate.is_file():
                err().print(f"no store ({escape(str(exc))}); scanning with the baseline "
                            f"{escape(str(candidate))}", markup=False)
                return load_baseline(candidate), False
        raise UsageError(f"{exc} (without a store, scan with a baseline: --baseline FILE, or "
                         f"commit one as {DEFAULT_BASELINE}, exported with "
                         "`keyroll scan --export-baseline`)") from None


def scan(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(
        help="Files or folders (default .); - reads stdin (logs).", show_default=False)] = None,
    git: Annotated[bool, typer.Option("--git", help="Scan every blob of the repository's "
                                                    "history (all refs), each once.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="With --git: only commits not "
                                                             "reachable from REV.")] = None,
    staged_only: Annotated[bool, typer.Option("--staged", help="Scan what `git commit` would "
                                                               "record (pre-commit).")] = False,
    all_files: Annotated[bool, typer.Option("--all", help="Also files .gitignore ignores.")
                         ] = False,
    dsn: Annotated[str | None, typer.Option("--dsn", help="PostgreSQL conninfo/URL (or env:VAR) "
                                                          "to run --query on.")] = None,
    query: Annotated[str | None, typer.Option("--query", help="SQL whose every column is "
                                                              "scanned (read-only).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable findings.")] = False,
    sarif: Annotated[bool, typer.Option("--sarif", help="SARIF 2.1.0 (code scanning).")] = False,
    fail_on: Annotated[FailOn | None, typer.Option(
        "--fail-on", help="retired: exit 1 on any finding, not only current/pending.")] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="Scan with this exported baseline instead of the store (- reads "
        "it from stdin).")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export-baseline", help="Write a scan baseline (keyed hashes only) and exit (- "
        "prints it).")] = None,
) -> None:
    """Find every version of every secret keyroll holds or held, exactly, in every spelling.

    Exit 1 when a current or pending value is found (rotate it with --incident), 0 otherwise
    (retired values too, unless --fail-on retired), 2 for bad input. Never prints a value.
    """
    app: AppContext = ctx.obj
    if export is not None:
        _export(app, export)
        return
    if as_json and sarif:
        raise UsageError("--json and --sarif are exclusive: pick one")
    if since and not git:
        raise UsageError("--since needs --git")
    if (dsn is None) != (query is None):
        raise UsageError("--dsn and --query go together: --dsn URL --query 'SELECT …'")
    targets = list(paths or [])
    if git and staged_only:
        raise UsageError("--git and --staged are exclusive: history, or the index")
    stdin = STDIN in targets
    targets = [t for t in targets if t != STDIN]
    if stdin:
        app.claim_stdin("scan -")
    root = Path(targets[0]) if targets and (git or staged_only) else Path(".")
    if not targets and not stdin and dsn is None and not git and not staged_only:
        targets = ["."]
    index, journaled = _index(app, baseline, root)
    matcher = Matcher(index)
    skipped = Skipped()
    items: list[Iterable[Item]] = []
    sources: list[str] = []
    if staged_only:
        sources.append("staged")
        items.append(staged(root, skipped=skipped))
    elif git:
        sources.append(f"git{' since ' + since if since else ''}")
        items.append(git_history(root, since=since, skipped=skipped))
        targets = targets[1:]
    if targets and not staged_only:
        sources.append(f"{len(targets)} path(s)")
        items.append(tree([Path(t) for t in targets], all_files=all_files, skipped=skipped))
    if stdin:
        sources.append("stdin")
        items.append(stdin_text(sys.stdin.buffer))
    if dsn is not None and query is not None:
        sources.append("query")
        items.append(query_rows(_dsn(dsn), query))

    def every() -> Iterator[Item]:
        for group in items:
            yield from group

    result = scan_items(matcher, every(), sources=sources)
    result.skipped += skipped.too_large + skipped.unreadable
    if journaled:
        journal_scan(app.journal, result)
    _show(result, as_json=as_json, sarif=sarif)
    code = result.exit_code(fail_on_retired=fail_on is FailOn.retired)
    if code:
        raise typer.Exit(code)


def _dsn(text: str) -> str:
    if text.startswith("env:"):
        value = os.environ.get(text[4:])
        if not value:
            raise UsageError(f"--dsn {escape(text)}: the variable is not set")
        return value
    return text


def _show(result: ScanResult, *, as_json: bool, sarif: bool) -> None:
    if as_json:
        print_json(result.to_json())
    elif sarif:
        print_json(result.to_sarif())
    else:
        console = out()
        for f in result.findings:
            where = f"{f.commit[:12]}:" if f.commit else ""
            e = f.entry
            console.print(f"{escape(where + f.path)}:{f.line}: {e.name} --env {e.environment} "
                          f"version {e.version} ({e.state.value}) fingerprint {e.fingerprint}",
                          markup=False)
        counts = ", ".join(f"{result.count(s)} {s.value}" for s in ValueState if result.count(s))
        console.print(f"scanned {result.texts} text(s), {result.bytes} characters, for "
                      f"{result.versions} version(s) ({result.index_source}): "
                      f"{len(result.findings)} finding(s){' (' + counts + ')' if counts else ''}",
                      markup=False)
    for hint in result.hints():
        err().print(f"live secret exposed: rotate it now: {hint}", markup=False)


def _export(app: AppContext, path: Path) -> None:
    document, left_out = export_baseline(app.store, utcnow())
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    versions = document["versions"]
    assert isinstance(versions, list)
    if str(path) == STDIN:  # keyed hashes under a published key: nothing secret in it
        sys.stdout.write(text)
    else:
        write_private(path, text)
        path.chmod(0o644)  # meant to be committed: digests under a published key only
    app.journal.append("scan.baseline", evidence={"file": str(path), "versions": len(versions),
                                                  "left_out": left_out})
    (err() if str(path) == STDIN else out()).print(
        f"wrote {escape(str(path))}: {len(versions)} version(s)"
        + (f", {left_out} left out (shorter than 16 characters, or destroyed before "
           "baseline digests were kept)" if left_out else "")
        + "; commit it and refresh it after each rotation", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(scan)
