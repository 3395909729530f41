"""iam/db/models.py: the Client mixin methods Authlib relies on, and the link uniqueness rules
the database itself enforces."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from iam.db.models import Client, IdentityLink, User
from iam.db.store import Store
from iam.secretbox import digest

REDIRECT = "https://app.example.com/callback"


def _client(**overrides: object) -> Client:
    values: dict[str, object] = {
        "client_id": "c_test",
        "name": "Test app",
        "is_public": False,
        "secret_hash": digest("current-secret"),
        "previous_secret_hash": None,
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "allowed_scopes": "openid profile email",
    }
    values.update(overrides)
    return Client(**values)


# --- check_redirect_uri: exact match only ----------------------------------------------


def test_registered_redirect_uri_matches() -> None:
    assert _client().check_redirect_uri(REDIRECT)


@pytest.mark.parametrize(
    "uri",
    [
        REDIRECT + "/",
        REDIRECT + "?extra=1",
        REDIRECT + "#frag",
        "https://APP.example.com/callback",
        "https://app.example.com/Callback",
        "http://app.example.com/callback",
        "https://app.example.com:443/callback",
        "https://app.example.com/callback/../callback",
        "https://app.example.com/",
        "",
    ],
)
def test_any_other_redirect_uri_is_refused(uri: str) -> None:
    assert not _client().check_redirect_uri(uri)


def test_each_of_several_redirect_uris_matches() -> None:
    client = _client(redirect_uris=[REDIRECT, "http://127.0.0.1:9000/cb"])
    assert client.check_redirect_uri(REDIRECT)
    assert client.check_redirect_uri("http://127.0.0.1:9000/cb")
    assert not client.check_redirect_uri("http://127.0.0.1:9001/cb")


# --- check_client_secret ----------------------------------------------------------------


def test_current_secret_is_accepted() -> None:
    assert _client().check_client_secret("current-secret")


def test_previous_secret_is_accepted_during_rotation() -> None:
    client = _client(previous_secret_hash=digest("previous-secret"))
    assert client.check_client_secret("previous-secret")
    assert client.check_client_secret("current-secret")


@pytest.mark.parametrize("offered", ["wrong", "", "current-secret ", digest("current-secret")])
def test_other_secrets_are_refused(offered: str) -> None:
    assert not _client(previous_secret_hash=digest("previous-secret")).check_client_secret(offered)


def test_client_without_secret_accepts_no_secret() -> None:
    client = _client(is_public=True, secret_hash=None, previous_secret_hash=None)
    assert not client.check_client_secret("")
    assert not client.check_client_secret("anything")


# --- get_allowed_scope ------------------------------------------------------------------


def test_allowed_subset_of_scopes_is_granted() -> None:
    assert _client().get_allowed_scope("openid email") == "openid email"


def test_repeated_scopes_are_granted_once() -> None:
    assert _client().get_allowed_scope("openid openid profile") == "openid profile"


def test_unknown_scope_makes_the_request_invalid() -> None:
    assert _client().get_allowed_scope("openid phone") is None
    assert _client().get_allowed_scope("admin") is None


@pytest.mark.parametrize("scope", [None, ""])
def test_no_scope_requested_grants_all_allowed(scope: str | None) -> None:
    assert _client().get_allowed_scope(scope) == "openid profile email"


# --- check_endpoint_auth_method ---------------------------------------------------------


def test_public_client_authenticates_with_none_only() -> None:
    client = _client(is_public=True, secret_hash=None)
    assert client.check_endpoint_auth_method("none", "token")
    assert not client.check_endpoint_auth_method("client_secret_basic", "token")
    assert not client.check_endpoint_auth_method("client_secret_post", "token")


def test_confidential_client_needs_a_secret_method() -> None:
    client = _client()
    assert client.check_endpoint_auth_method("client_secret_basic", "token")
    assert client.check_endpoint_auth_method("client_secret_post", "revoke")
    assert not client.check_endpoint_auth_method("none", "token")
    assert not client.check_endpoint_auth_method("private_key_jwt", "token")


# --- default redirect URI, response and grant types -------------------------------------


def test_default_redirect_uri_only_with_exactly_one() -> None:
    assert _client().get_default_redirect_uri() == REDIRECT
    two = _client(redirect_uris=[REDIRECT, "https://b.example.com/cb"])
    assert two.get_default_redirect_uri() is None
    assert _client(redirect_uris=[]).get_default_redirect_uri() is None


def test_response_type_code_needs_the_authorization_code_grant() -> None:
    assert _client().check_response_type("code")
    assert not _client().check_response_type("token")
    assert not _client(grant_types=["client_credentials"]).check_response_type("code")


def test_grant_type_is_checked_against_the_registered_list() -> None:
    client = _client(grant_types=["authorization_code", "refresh_token"])
    assert client.check_grant_type("refresh_token")
    assert not client.check_grant_type("client_credentials")
    assert not client.check_grant_type("password")


# --- IdentityLink uniqueness, enforced by the database ----------------------------------


def _user(store: Store, phone: str = "+8613800138000") -> str:
    with store() as db:
        user = User(name="Zhang San", phone=phone)
        db.add(user)
        db.commit()
        return user.id


def _add_link(store: Store, user_id: str, provider_user_id: str, key: str) -> None:
    with store() as db:
        db.add(
            IdentityLink(
                user_id=user_id,
                provider="wecom",
                provider_user_id=provider_user_id,
                provider_user_key=key,
            )
        )
        db.commit()


def test_same_provider_user_key_twice_is_refused_by_the_database(store: Store) -> None:
    user_id = _user(store)
    _add_link(store, user_id, "CORP_A/ZhangSan", "CORP_A/zhangsan")
    with pytest.raises(IntegrityError):
        _add_link(store, user_id, "CORP_A/zhangsan", "CORP_A/zhangsan")


def test_same_key_for_another_user_is_refused_too(store: Store) -> None:
    first = _user(store)
    second = _user(store, "+8613900139000")
    _add_link(store, first, "CORP_A/ZhangSan", "CORP_A/zhangsan")
    with pytest.raises(IntegrityError):
        _add_link(store, second, "CORP_A/ZHANGSAN", "CORP_A/zhangsan")


def test_same_key_at_another_provider_is_allowed(store: Store) -> None:
    user_id = _user(store)
    _add_link(store, user_id, "CORP_A/zhangsan", "CORP_A/zhangsan")
    with store() as db:
        db.add(
            IdentityLink(
                user_id=user_id,
                provider="dingtalk",
                provider_user_id="CORP_A/zhangsan",
                provider_user_key="CORP_A/zhangsan",
            )
        )
        db.commit()


def test_one_user_may_hold_several_links(store: Store) -> None:
    user_id = _user(store)
    _add_link(store, user_id, "CORP_A/zhangsan_A", "CORP_A/zhangsan_a")
    _add_link(store, user_id, "CORP_B/zs_b", "CORP_B/zs_b")
    with store() as db:
        links = db.scalars(select(IdentityLink).where(IdentityLink.user_id == user_id)).all()
        found = sorted(link.provider_user_id for link in links)
    assert found == ["CORP_A/zhangsan_A", "CORP_B/zs_b"]


def test_same_phone_twice_is_refused_by_the_database(store: Store) -> None:
    _user(store)
    with pytest.raises(IntegrityError):
        _user(store)
