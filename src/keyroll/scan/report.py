"""A scan's result: findings (never a value), counts, the exit code, JSON and SARIF 2.1.0."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from keyroll.scan.index import Entry, ValueState

__all__ = ["SARIF_SCHEMA", "Finding", "ScanResult"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {ValueState.CURRENT: "error", ValueState.PENDING: "error",
          ValueState.PREVIOUS: "warning", ValueState.RETIRED: "note"}


@dataclass(frozen=True, slots=True)
class Finding:
    """A version of a secret found at a place. Carries its fingerprint, never its value."""

    path: str
    line: int
    entry: Entry
    commit: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "commit": self.commit, "line": self.line,
                **self.entry.to_json()}

    @property
    def hint(self) -> str | None:
        """The command to run for a live leak."""
        if not self.entry.state.live:
            return None
        return f"keyroll rotate {self.entry.name} --env {self.entry.environment} --incident"


@dataclass
class ScanResult:
    """Everything a scan found and how much it read (counts only)."""

    findings: list[Finding] = field(default_factory=list)
    texts: int = 0
    bytes: int = 0
    skipped: int = 0
    sources: list[str] = field(default_factory=list)
    index_source: str = "store"
    versions: int = 0
    engine: str = "digests"

    def count(self, *states: ValueState) -> int:
        return sum(1 for f in self.findings if f.entry.state in states)

    def exit_code(self, *, fail_on_retired: bool) -> int:
        """1 for a current or pending finding (or any, with ``fail_on_retired``), else 0."""
        if self.count(ValueState.CURRENT, ValueState.PENDING):
            return 1
        if fail_on_retired and self.findings:
            return 1
        return 0

    def hints(self) -> list[str]:
        return list(dict.fromkeys(h for f in self.findings if (h := f.hint)))

    def summary(self) -> dict[str, object]:
        """Counts for the journal and the verify hook's evidence (no path, no value)."""
        return {
            "sources": self.sources, "texts": self.texts, "bytes": self.bytes,
            "skipped": self.skipped, "index": self.index_source, "versions": self.versions,
            "findings": len(self.findings),
            **{state.value: self.count(state) for state in ValueState},
        }

    def to_json(self) -> dict[str, object]:
        return {"format": "keyroll-scan/1", "summary": self.summary(),
                "findings": [f.to_json() for f in self.findings], "hints": self.hints()}

    def to_sarif(self) -> dict[str, object]:
        """SARIF 2.1.0: one rule per state; the fingerprint as a partial fingerprint."""
        rules = [{"id": f"keyroll/{state.value}",
                  "name": f"{state.value.capitalize()}SecretValue",
                  "shortDescription": {"text": f"A {state.value} secret value keyroll holds"},
                  "defaultConfiguration": {"level": _LEVEL[state]}}
                 for state in ValueState]
        results = []
        for finding in self.findings:
            entry = finding.entry
            text = (f"{entry.state.value} value of {entry.name} in {entry.environment} "
                    f"(version {entry.version}, fingerprint {entry.fingerprint})")
            if finding.hint:
                text += f": rotate it now with `{finding.hint}`"
            location: dict[str, object] = {"physicalLocation": {
                "artifactLocation": {"uri": quote(finding.path)},
                "region": {"startLine": finding.line}}}
            result: dict[str, object] = {
                "ruleId": f"keyroll/{entry.state.value}",
                "ruleIndex": list(ValueState).index(entry.state),
                "level": _LEVEL[entry.state],
                "message": {"text": text},
                "locations": [location],
                "partialFingerprints": {"keyrollFingerprint/v1": entry.fingerprint},
                "properties": {"class": entry.name, "env": entry.environment,
                               "version": entry.version, "state": entry.state.value},
            }
            if finding.commit:
                result["properties"]["commit"] = finding.commit  # type: ignore[index]
            results.append(result)
        return {
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {"name": "keyroll", "informationUri":
                                    "https://github.com/keyroll/keyroll", "rules": rules}},
                "results": results,
            }],
        }
