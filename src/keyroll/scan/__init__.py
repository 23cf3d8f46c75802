"""``keyroll scan``: find every value keyroll has ever held, exactly, in files, git history,
logs and tables (`index` what to look for, `matcher` one pass per text, `sources` what to read,
`report` findings/JSON/SARIF, `run` scan and journal). No typer or rich: the CLI draws."""

from keyroll.scan.index import Entry as Entry
from keyroll.scan.index import ScanIndex as ScanIndex
from keyroll.scan.index import ValueState as ValueState
from keyroll.scan.index import export_baseline as export_baseline
from keyroll.scan.index import load_baseline as load_baseline
from keyroll.scan.index import parse_baseline as parse_baseline
from keyroll.scan.matcher import Matcher as Matcher
from keyroll.scan.report import Finding as Finding
from keyroll.scan.report import ScanResult as ScanResult
from keyroll.scan.run import journal_scan as journal_scan
from keyroll.scan.run import scan_items as scan_items

__all__ = ["Entry", "Finding", "Matcher", "ScanIndex", "ScanResult", "ValueState",
           "export_baseline", "journal_scan", "load_baseline", "parse_baseline", "scan_items"]
