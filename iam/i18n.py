"""The message catalogue (zh-CN, en) and the choice of language for a request.

The texts live in `iam/messages/<language>.json` (package data): one flat object a language,
message key -> text, with `str.format` fields such as `{seconds}`. They are read once, at import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from importlib.resources import files
from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "iam_lang"

log = logging.getLogger("iam.i18n")


def load_texts(lang: str) -> dict[str, str]:
    """The texts of one language as shipped: `iam/messages/<lang>.json`, key -> text."""
    resource = files("iam") / "messages" / f"{lang}.json"
    texts = json.loads(resource.read_text(encoding="utf-8"))
    if not isinstance(texts, dict) or not all(
        isinstance(key, str) and isinstance(text, str) for key, text in texts.items()
    ):
        raise ValueError(f"iam/messages/{lang}.json is not one object of key -> text")
    return texts


def _catalogue() -> dict[str, dict[str, str]]:
    """Key -> {language: text}, from every language's file."""
    messages: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        for key, text in load_texts(lang).items():
            messages.setdefault(key, {})[lang] = text
    return messages


#: key -> {language: text}. Read-only by convention: the texts are edited in iam/messages/.
MESSAGES: dict[str, dict[str, str]] = _catalogue()
#: (key, language) pairs already reported missing: each is logged once per process.
_reported_missing: set[tuple[str, str]] = set()


def negotiate(query_lang: str | None, cookie_lang: str | None, accept_language: str) -> str:
    """`?lang=` first, then the remembered choice, then Accept-Language; English otherwise."""
    for choice in (query_lang, cookie_lang):
        if choice in LANGUAGES:
            return choice
    ranked = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:  # q=0 means "not acceptable" (RFC 9110 12.5.4)
            ranked.append((-quality, index, tag.strip().lower()))
    for _quality, _index, tag in sorted(ranked):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


def translator(lang: str) -> Callable[..., str]:
    """`t("key", name=...)` in `lang`, falling back to English, then to the key itself. A text
    missing in a language we ship (a bug: tests/test_i18n.py checks the keys used) is logged,
    once per key and language; an unknown `lang` falls back to English without a word."""

    def translate(key: str, **params: Any) -> str:
        entry: Mapping[str, str] = MESSAGES.get(key, {})
        text = entry.get(lang)
        if not text:
            fallback = entry.get(DEFAULT_LANGUAGE)
            if lang in LANGUAGES or not fallback:
                _report_missing(key, lang if lang in LANGUAGES else DEFAULT_LANGUAGE, fallback)
            text = fallback or key
        return text.format(**params) if params else text

    return translate


def _report_missing(key: str, lang: str, fallback: str | None) -> None:
    if (key, lang) in _reported_missing:
        return
    _reported_missing.add((key, lang))
    shown = "the English text" if fallback else "the key itself"
    log.warning("message %r has no %s text in iam/messages/; showing %s", key, lang, shown)
