"""The token format and its digests (chalicelib.core.tokens), pure."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.core import tokens


def test_a_token_parses_back_to_its_id_and_verifies() -> None:
    issued = tokens.issue("ci", "read", "2026-11-30T00:00:00Z")
    parsed = tokens.parse(issued.value)
    assert parsed is not None and parsed[0] == issued.record.id
    assert tokens.verify(issued.record, parsed[1])


def test_the_record_holds_no_secret() -> None:
    issued = tokens.issue("ci", "read", "2026-11-30T00:00:00Z")
    secret = tokens.parse(issued.value)[1]
    assert secret.encode() not in repr(issued.record).encode() and secret not in repr(issued.record)
    assert issued.value not in repr(issued.record)


def test_a_wrong_secret_or_a_missing_record_does_not_verify() -> None:
    issued = tokens.issue("ci", "read", "2026-11-30T00:00:00Z")
    other = tokens.issue("ci", "read", "2026-11-30T00:00:00Z")
    assert not tokens.verify(issued.record, tokens.parse(other.value)[1])
    assert not tokens.verify(None, tokens.parse(issued.value)[1])


def test_equal_secrets_give_different_digests() -> None:
    first, second = tokens.issue("a", "read", "t"), tokens.issue("b", "read", "t")
    assert first.record.salt != second.record.salt
    assert tokens.secret_digest(first.record.salt, "x") != tokens.secret_digest(second.record.salt, "x")


def test_malformed_tokens_do_not_parse() -> None:
    good = tokens.issue("ci", "read", "t").value
    for bad in ("", "mct_", good + "x", good[:-1], good.replace("mct_", "mcx_"), "mct_XYZ_" + "a" * 43,
                good.upper(), " " + good):
        assert tokens.parse(bad) is None, bad


def test_needs_touch_once_a_minute() -> None:
    record = tokens.issue("ci", "read", "t").record
    assert tokens.needs_touch(record, 1000.0)
    touched = replace(record, last_used_s=1000.0)
    assert not tokens.needs_touch(touched, 1059.9)
    assert tokens.needs_touch(touched, 1060.0)
