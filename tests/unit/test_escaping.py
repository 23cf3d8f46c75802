"""The escaped spellings render.py writes are the ones the redactor masks."""

from __future__ import annotations

import json
import shlex

import pytest

from keyroll.cli.secrets_cmd import parse_dotenv
from keyroll.escaping import dotenv_quote, escaped_forms, json_escape, shell_backslash, shell_quote
from tests.leaks import printf_q

VALUES = ['ab$c"d\\e', "it's x", "a b", "plain-._/:=@%+,~", "x[y]z{1}*?!#^&;|<>()`", "~x#y",
          "#a~", "ünï€ode"]


@pytest.mark.parametrize("value", VALUES)
def test_spellings_round_trip(value: str) -> None:
    assert parse_dotenv(f"X={dotenv_quote(value)}\n") == {"X": value}
    assert json.loads(f'"{json_escape(value)}"') == value
    assert shlex.split(shell_quote(value)) == [value]
    assert shell_backslash(value) == printf_q(value)
    assert {shell_quote(value), shell_backslash(value)} <= escaped_forms(value)
