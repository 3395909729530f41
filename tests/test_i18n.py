"""iam/i18n.py: choosing the language of a request, and the message catalogue."""

from __future__ import annotations

import pytest

from iam.i18n import LANGUAGES, MESSAGES, negotiate, translator


def test_query_lang_wins_over_cookie_and_header() -> None:
    assert negotiate("zh-CN", "en", "en") == "zh-CN"
    assert negotiate("en", "zh-CN", "zh-CN") == "en"


def test_cookie_wins_over_header() -> None:
    assert negotiate(None, "zh-CN", "en-US,en;q=0.9") == "zh-CN"


def test_unknown_query_lang_falls_through_to_cookie() -> None:
    assert negotiate("fr", "zh-CN", "en") == "zh-CN"


def test_unknown_cookie_falls_through_to_header() -> None:
    assert negotiate(None, "de", "zh-CN") == "zh-CN"


def test_default_is_english() -> None:
    assert negotiate(None, None, "") == "en"
    assert negotiate(None, None, "fr-FR,de;q=0.5") == "en"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("zh-TW", "zh-CN"),
        ("en-GB", "en"),
        ("fr;q=1.0, en;q=0.5, zh;q=0.8", "zh-CN"),
        ("fr, en;q=0.1, zh-CN;q=0.2", "zh-CN"),
        ("zh-CN;q=0.5, en;q=0.5", "zh-CN"),
        ("ZH-cn", "zh-CN"),
        ("zh;q=bogus, en;q=0.1", "en"),
    ],
)
def test_accept_language_is_ranked_by_q_value(header: str, expected: str) -> None:
    assert negotiate(None, None, header) == expected


def test_language_with_q_zero_is_never_chosen() -> None:
    assert negotiate(None, None, "zh-CN;q=0") == "en"


def test_translator_gives_the_language_asked() -> None:
    assert translator("zh-CN")("login.title") == "登录"
    assert translator("en")("login.title") == "Sign in"


def test_translator_fills_parameters() -> None:
    assert translator("en")("signed_in.as", name="Zhang San") == "Signed in as Zhang San"
    assert translator("zh-CN")("signed_in.as", name="张三") == "当前登录：张三"


def test_translator_falls_back_to_english_for_unknown_language() -> None:
    assert translator("fr")("login.title") == "Sign in"


def test_translator_falls_back_to_the_key_for_unknown_message() -> None:
    assert translator("zh-CN")("no.such.key") == "no.such.key"


def test_every_message_exists_in_every_language() -> None:
    missing = [
        (key, lang) for key, entry in MESSAGES.items() for lang in LANGUAGES if not entry.get(lang)
    ]
    assert missing == []
