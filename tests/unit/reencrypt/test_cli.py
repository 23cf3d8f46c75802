"""The CLI side of ``keyroll reencrypt`` that needs no database."""

from __future__ import annotations

import pytest

from keyroll.cli.app import run
from keyroll.cli.reencrypt_cmd import _Bar
from keyroll.reencrypt import Progress


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--batch-size", "100001"],
                                  ["--pause-ms", "-1"]])
def test_out_of_range_options_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["reencrypt", "field", "--env", "dev", *args]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_progress_bar_follows_the_job() -> None:
    bar = _Bar()
    bar(Progress("users.email_enc", 10, 100, 9, 1, 0, 1))
    bar(Progress("users.email_enc", 60, 100, 58, 1, 1, 1))
    bar(Progress("users.doc_enc", 5, 50, 5, 0, 0, 1))
    tasks = {t.description.split(" ")[0]: t for t in bar.progress.tasks}
    assert tasks["users.email_enc"].completed == 60 and tasks["users.email_enc"].total == 100
    assert tasks["users.doc_enc"].completed == 5


def test_summary_names_failed_keys_and_remaining_rows(capsys: pytest.CaptureFixture[str]) -> None:
    from keyroll.cli.reencrypt_cmd import _print
    from keyroll.reencrypt import ColumnResult, ReencryptReport

    failing = ColumnResult("users", "id", "email_enc", "text", failed=25, remaining=25,
                           failed_keys=[str(k) for k in range(25)])
    lagging = ColumnResult("users", "id", "doc_enc", "binary", rewritten=10, remaining=3)
    report = ReencryptReport("dev/field", "0000abcd", False, [failing, lagging])
    assert not report.ok
    _print(report)
    captured = capsys.readouterr()
    assert "row keys: 0, 1, 2" in captured.err and "19 and 5 more" in captured.err
    assert "users.doc_enc: 3 rows are still not under the current key" in captured.err
    assert "users.email_enc" in captured.out
