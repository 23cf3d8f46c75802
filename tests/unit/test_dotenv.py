"""Issue 11 §5: a .env keyroll updates keeps every line that is not keyroll's."""

from __future__ import annotations

import pytest

from keyroll import dotenv
from keyroll.errors import UsageError

APP_ENV = """\
# FastAPI full-stack template .env (45 lines in real life; what matters is that all survive)
DOMAIN=localhost
ENVIRONMENT=local

PROJECT_NAME="Full Stack FastAPI Project"
export STACK_NAME=full-stack-fastapi-project
BACKEND_CORS_ORIGINS="http://localhost,http://localhost:5173"
JWT_SECRET=old-value-0000000000000000000000000000000  # rotated by keyroll
SMTP_HOST=
FIRST_SUPERUSER_PASSWORD='changethis'
CERT="-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----"
JWT_SECRET_PREVIOUS=older-value-00000000000000000000000000000
SENTRY_DSN=
"""


def test_merge_updates_owned_in_place_and_keeps_the_rest() -> None:
    owned = {"JWT_SECRET", "JWT_SECRET_PREVIOUS", "JWT_SECRET_KID", "JWT_SECRET_NEXT"}
    values = {"JWT_SECRET": "new$value\"x", "JWT_SECRET_KID": "0a0b0c0d"}
    merged = dotenv.merge(APP_ENV, values, owned)
    old_lines = APP_ENV.splitlines()
    new_lines = merged.splitlines()
    foreign = [line for line in old_lines if not line.startswith("JWT_SECRET")]
    assert [line for line in new_lines if not line.startswith("JWT_SECRET")] == foreign
    # updated where it was, the retired _PREVIOUS removed, the new _KID appended at the end
    assert new_lines.index('JWT_SECRET="new\\$value\\"x"') == old_lines.index(
        next(line for line in old_lines if line.startswith("JWT_SECRET=")))
    assert not any(line.startswith("JWT_SECRET_PREVIOUS") for line in new_lines)
    assert new_lines[-1] == "JWT_SECRET_KID=0a0b0c0d"
    parsed = dotenv.parse(merged)
    assert parsed["JWT_SECRET"] == 'new$value"x'
    assert parsed["CERT"].count("\n") == 2
    assert parsed["PROJECT_NAME"] == "Full Stack FastAPI Project"
    assert parsed["FIRST_SUPERUSER_PASSWORD"] == "changethis"
    # a second merge with the same values changes nothing
    assert dotenv.merge(merged, values, owned) == merged


def test_merge_keeps_export_prefix_and_crlf() -> None:
    merged = dotenv.merge("A=1\r\nexport JWT_SECRET=x\r\n", {"JWT_SECRET": "y"}, {"JWT_SECRET"})
    assert merged == "A=1\r\nexport JWT_SECRET=y\r\n"


def test_merge_into_empty_and_unterminated_last_line() -> None:
    assert dotenv.merge("", {"A": "1"}, {"A"}) == "A=1\n"
    assert dotenv.merge("B=2", {"A": "1"}, {"A"}) == "B=2\nA=1\n"


@pytest.mark.parametrize("text", ["not a line\n", 'A="never closed\n'])
def test_malformed_file_is_refused_by_line_number_without_text(text: str) -> None:
    with pytest.raises(UsageError) as info:
        dotenv.merge(text, {"A": "secret-value"}, {"A"})
    assert "line 1" in str(info.value)
    assert "never" not in str(info.value).replace("never closes", "")
