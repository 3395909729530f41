"""iam/i18n.py: choosing the language of a request, and the message catalogue (iam/messages/)."""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
import string
from importlib.resources import files
from pathlib import Path

import pytest

from iam import i18n
from iam.admin.apps.api import LIFETIME_FIELDS
from iam.admin.users import DONE
from iam.i18n import LANGUAGES, MESSAGES, load_texts, negotiate, translator
from iam.services.clients import ACCESS_TOKEN_ALGS, CONTEXT_POLICIES

ROOT = Path(__file__).resolve().parent.parent
#: What a message key looks like: dotted lower-case words ("otp.wrong", "admin.corp.problem.ip").
KEY = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
#: The keys built at run time, by the literal prefix in the code and every ending it can take.
#: The test fails on a prefix not listed here: list the endings of a new one.
DYNAMIC_KEYS = {
    # templates/admin/app.html: t("admin.app." ~ name) and t("admin.app." ~ name ~ "_hint") for
    # each lifetime field of an app.
    "admin.app.": [end for name in LIFETIME_FIELDS for end in (name, f"{name}_hint")],
    # templates/admin/app.html field_error(name): t("admin.app.invalid." ~ name) for the fields
    # it is called with (a lifetime field has admin.app.invalid.lifetime instead).
    "admin.app.invalid.": [
        "name",
        "redirect_uris",
        "post_logout_redirect_uris",
        "allowed_origins",
        "initiate_login_uri",
        "token_endpoint_auth_method",
        "jwks",
        "jwks_uri",
        "scopes",
        "context_policy",
        "context_claim",
        "access_token_signing_alg",
    ],
    # templates/admin/app.html: t("admin.app.access_token_alg." ~ alg) for the choices offered.
    "admin.app.access_token_alg.": list(ACCESS_TOKEN_ALGS),
    # templates/admin/app.html: t("admin.app.auth_method." ~ method) for the methods offered.
    "admin.app.auth_method.": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    # templates/admin/app.html: t("admin.app.policy." ~ policy) for the choices offered.
    "admin.app.policy.": list(CONTEXT_POLICIES),
    # iam/admin/corps/console.py `_error_keys`: f"admin.corp.invalid.{error.field}", the fields the
    # corp services and forms check (iam/services/corps.py, iam/admin/corps/console.py).
    "admin.corp.invalid.": ["corp_id", "name", "agent_id", "secret", "trust_mobile", "enabled"],
    # templates/admin/user.html: t("admin.user_done_" ~ done), done one of iam.admin.users.DONE.
    "admin.user_done_": list(DONE),
    # templates/admin/user.html, users.html: t("admin.user_status_" ~ status) of a user or link.
    "admin.user_status_": ["active", "disabled"],
    # templates/admin/user.html: t("admin.user_link_disabled_" ~ reason) of a disabled link.
    "admin.user_link_disabled_": ["left", "renamed", "other"],
}
#: Strings that look like message keys of a known namespace but are something else, and that
#: the scan cannot tell apart by itself (audit events given to `audit.record` as literals are).
NOT_MESSAGE_KEYS: set[str] = set()
#: The functions that write an audit event given as their second argument (`audit.record` and
#: the services' helpers around it): that literal is an event, not a message.
AUDITING = {
    "audit.record",
    "otp.record_refusal",
    "record_refusal",
    "directory.link_event",
    "link_event",
}


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


def test_the_catalogue_is_read_from_one_file_a_language() -> None:
    for lang in LANGUAGES:
        texts = load_texts(lang)
        assert texts == {key: entry[lang] for key, entry in MESSAGES.items() if lang in entry}


def test_the_message_files_ship_in_the_package() -> None:
    """Read through importlib.resources, as an installed package would be; pyproject.toml's
    package data must name them, or a wheel leaves them out."""
    for lang in LANGUAGES:
        assert (files("iam") / "messages" / f"{lang}.json").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^iam = \["messages/\*\.json"\]$', pyproject, re.M)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_file_is_sorted_and_written_as_is(lang: str) -> None:
    """Sorted keys, two-space indent, Chinese as it is (no \\u escapes): diffs stay readable."""
    path = ROOT / "iam" / "messages" / f"{lang}.json"
    raw = path.read_text(encoding="utf-8")
    canonical = json.dumps(json.loads(raw), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    assert raw == canonical


def test_both_languages_have_the_same_keys() -> None:
    english, chinese = (set(load_texts(lang)) for lang in ("en", "zh-CN"))
    assert sorted(english - chinese) == [], "keys with no zh-CN text"
    assert sorted(chinese - english) == [], "keys with no en text"


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_both_languages_take_the_same_placeholders() -> None:
    """A key missing in a language is test_both_languages_have_the_same_keys' to report."""
    texts = {lang: load_texts(lang) for lang in LANGUAGES}
    shared = set.intersection(*(set(texts[lang]) for lang in LANGUAGES))
    differing = {
        key: {lang: sorted(placeholders(texts[lang][key])) for lang in LANGUAGES}
        for key in sorted(shared)
        if len({frozenset(placeholders(texts[lang][key])) for lang in LANGUAGES}) > 1
    }
    assert differing == {}


def _namespaces() -> set[str]:
    return {key.split(".")[0] for key in MESSAGES}


def _python_strings(tree: ast.AST) -> tuple[set[str], set[str], set[str]]:
    """(string literals, prefixes of keys built at run time, audit event names) of one module.
    A built key is an f-string or a `"literal" + ...`; an audit event is the literal event of an
    `audit.record(connection, "event", ...)` call or of a helper around it (`AUDITING`: they
    share namespaces with messages)."""
    prefixes: set[str] = set()
    events: set[str] = set()
    parts_of_built: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts_of_built.update(id(value) for value in node.values)
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                prefixes.add(head.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                parts_of_built.add(id(node.left))
                prefixes.add(node.left.value)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in AUDITING:
            event = [*node.args[1:2], *(kw.value for kw in node.keywords if kw.arg == "event")]
            for part in event:
                for sub in ast.walk(part):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        events.add(sub.value)
    literals = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in parts_of_built
    }
    return literals, prefixes, events


#: A quoted string in a Jinja expression or statement, and whether `~` or `+` joins it to more.
_JINJA_BLOCK = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
_JINJA_STRING = re.compile(r"""(["'])((?:(?!\1).)*)\1(\s*[~+])?""")


def _template_strings(text: str) -> tuple[set[str], set[str]]:
    """(string literals, prefixes of keys built with `~` or `+`) in one template's Jinja code."""
    literals: set[str] = set()
    prefixes: set[str] = set()
    for block in _JINJA_BLOCK.finditer(text):
        code = block.group(1) or block.group(2) or ""
        for match in _JINJA_STRING.finditer(code):
            (prefixes if match.group(3) else literals).add(match.group(2))
    return literals, prefixes


def keys_in_use() -> tuple[dict[str, set[str]], set[str]]:
    found, prefixes = _scan()
    return {key: set(where) for key, where in found.items()}, set(prefixes)


@functools.cache
def _scan() -> tuple[dict[str, set[str]], set[str]]:
    """Every message key in iam/**/*.py and templates/**/*.html, with where it is, and the
    prefixes of keys built at run time. A key is any literal shaped like one (KEY) in a
    namespace of the catalogue ("otp", "admin", ...): a call t("key"), web.error_page(request,
    "key"), a "message_key"/"error_key"/"notice_key" value, a connector's `reason`, a constant
    such as edge.MESSAGE_KEY: found alike, whatever carries it to the page. Audit event names
    (see _python_strings) and NOT_MESSAGE_KEYS are left out."""
    namespaces = _namespaces()
    found: dict[str, set[str]] = {}
    prefixes: set[str] = set()
    events: set[str] = set()
    sources: list[tuple[str, set[str], set[str]]] = []
    for path in sorted((ROOT / "iam").rglob("*.py")):
        if path == ROOT / "iam" / "i18n.py":
            continue
        literals, built, recorded = _python_strings(ast.parse(path.read_text(), str(path)))
        sources.append((path.relative_to(ROOT).as_posix(), literals, built))
        events |= recorded
    for path in sorted((ROOT / "templates").rglob("*.html")):
        literals, built = _template_strings(path.read_text())
        sources.append((path.relative_to(ROOT).as_posix(), literals, built))
    for where, literals, built in sources:
        for literal in literals - events - NOT_MESSAGE_KEYS:
            if KEY.fullmatch(literal) and literal.split(".")[0] in namespaces:
                found.setdefault(literal, set()).add(where)
        prefixes |= {
            prefix
            for prefix in built
            if re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z0-9_.]*", prefix)
            and prefix.split(".")[0] in namespaces
        }
    return found, prefixes


def test_the_scan_finds_keys_however_they_are_passed() -> None:
    """A guard on the scan itself: one key for each way the code hands one to a page."""
    found, prefixes = keys_in_use()
    assert {
        "login.title",  # t("...") in a template
        "admin.nav",  # t('...') in a template
        "error.flow_expired",  # web.error_page(request, "...")
        "error.csrf",  # FormRefusedError("...")
        "error.bad_input",  # edge.MESSAGE_KEY = "..."
        "upstream.not_a_member",  # a connector error's `reason`
        "wecom.busy",  # a WeCom errcode's reason
        "admin.corp.secret_unreadable",  # services/corps.py SECRET_UNREADABLE
        "admin.corp.not_found",  # Area("...") of the corps console
    } <= set(found)
    assert "login.succeeded" not in found  # an audit event, not a message
    assert {"admin.app.", "admin.corp.invalid.", "admin.user_done_"} <= prefixes  # ~, f"..."


def test_every_key_built_at_run_time_is_listed() -> None:
    _, prefixes = keys_in_use()
    assert sorted(prefixes) == sorted(DYNAMIC_KEYS)


def test_every_key_in_use_has_a_text_in_every_language() -> None:
    """Else the page shows the key itself (or English on a Chinese page)."""
    found, _ = keys_in_use()
    for prefix, endings in DYNAMIC_KEYS.items():
        for ending in endings:
            found.setdefault(prefix + ending, set()).add(f"DYNAMIC_KEYS[{prefix!r}]")
    texts = {lang: load_texts(lang) for lang in LANGUAGES}
    missing = {
        f"{key} ({lang})": sorted(where)
        for key, where in sorted(found.items())
        for lang in LANGUAGES
        if not texts[lang].get(key, "").strip()
    }
    assert missing == {}


def test_a_missing_text_is_logged_once_and_shown_in_english(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(MESSAGES, "test.only_english", {"en": "Only English"})
    monkeypatch.setattr(i18n, "_reported_missing", set())
    with caplog.at_level(logging.WARNING, logger="iam.i18n"):
        assert translator("zh-CN")("test.only_english") == "Only English"
        assert translator("zh-CN")("test.only_english") == "Only English"
        assert translator("zh-CN")("test.no_such_key") == "test.no_such_key"
        assert translator("en")("test.only_english") == "Only English"
        assert translator("fr")("test.only_english") == "Only English"
    warnings = [r.getMessage() for r in caplog.records if r.name == "iam.i18n"]
    assert len(warnings) == 2
    assert "'test.only_english' has no zh-CN text" in warnings[0]
    assert "'test.no_such_key' has no zh-CN text" in warnings[1]
