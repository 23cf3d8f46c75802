"""One scrubber for driver and library messages: URL and conninfo passwords, known secrets."""

from __future__ import annotations

from keyroll.scrub import REDACTED, cut_secrets, dsn_secret_parts, scrub


def test_url_passwords_with_brackets_slashes_and_at_signs() -> None:
    for password in ("ab@[s3cretpart]", "p]w/x[y", "[s3cr3tpw", "hunter22"):
        text = f'could not connect: "postgresql://app:{password}@db.internal:5432/app"'
        cleaned = scrub(text)
        assert password not in cleaned and "db.internal" in cleaned and REDACTED in cleaned


def test_conninfo_password_and_first_line() -> None:
    assert scrub("bad: host=db password='it\\'s x' user=app\nsecond line") == (
        "bad: host=db password=[redacted] user=app"
    )
    assert "second" in scrub("a\nsecond", first_line=False)


def test_short_secrets_are_cut_as_words() -> None:
    assert cut_secrets("pin abc in abcdef", ["abc"]) == "pin [redacted] in abcdef"
    assert cut_secrets("xx-longsecret-yy", ["longsecret"]) == "xx-[redacted]-yy"


def test_pieces_urllib_quotes_are_known() -> None:
    # urlsplit("postgresql://app:ab@[s3cretpart]@db/x") says "'s3cretpart' does not appear
    # to be an IPv4 or IPv6 address": the piece between brackets must be cut too
    parts = dsn_secret_parts("postgresql://app:ab@[s3cretpart]@db/x")
    assert "s3cretpart" in parts and "ab@[s3cretpart]" in parts
    assert dsn_secret_parts("host=db password=xyzzy-1234") == ["xyzzy-1234"]
