"""Run a scan over sources with one matcher; journal it (counts, never a value or a path)."""

from __future__ import annotations

from collections.abc import Iterable

from keyroll.audit import Journal
from keyroll.scan.matcher import Matcher
from keyroll.scan.report import Finding, ScanResult
from keyroll.scan.sources import Item

__all__ = ["journal_scan", "scan_items"]


def scan_items(matcher: Matcher, items: Iterable[Item], *, sources: list[str]) -> ScanResult:
    """Scan every item once, all versions at once."""
    result = ScanResult(sources=sources, index_source=matcher.index.source,
                        versions=len(matcher.index), engine=matcher.engine,
                        skipped=matcher.index.skipped)
    for item in items:
        result.texts += 1
        result.bytes += len(item.text)
        for hit in matcher.find(item.text):
            result.findings.append(Finding(item.path, hit.line, hit.entry, item.commit))
    return result


def journal_scan(journal: Journal, result: ScanResult) -> None:
    """Record the scan in the audit journal: what was scanned and the counts by state."""
    live = result.exit_code(fail_on_retired=False) != 0
    journal.append("scan.run", evidence=result.summary(),
                   fingerprints=sorted({f.entry.fingerprint for f in result.findings}),
                   outcome="found-live" if live else "ok")
