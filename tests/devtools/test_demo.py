"""Demo seeding: idempotent, a new secret each time, and a usable PKCE example."""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from starlette.testclient import TestClient
from support.constants import CORP_A, CORP_B
from support.constants import ISSUER as TEST_ISSUER
from support.units import in_unit

from iam.db.models import IdentityLink
from iam.db.store import Store
from iam.devtools.demo import (
    DEMO_CLIENT_ID,
    DEMO_PHONE,
    connect_simulator,
    example_authorization,
    seed_demo,
    seed_relying_parties,
    workbench_lines,
)
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.federation.wecom.callbacks import CallbackCrypto
from iam.secretbox import SecretBox
from iam.services import clients, corps, signing_keys, users

ISSUER = "http://127.0.0.1:8000"


def test_seeding_twice_keeps_the_world_and_replaces_the_secret(store: Store, box: SecretBox):
    first = seed_demo(store, box, ISSUER)
    second = seed_demo(store, box, ISSUER)

    assert (first.client_id, first.user_id, first.phone) == (
        DEMO_CLIENT_ID,
        second.user_id,
        DEMO_PHONE,
    )
    assert second.client_id == DEMO_CLIENT_ID
    assert first.redirect_uri == second.redirect_uri == f"{ISSUER}/dev/callback"
    assert first.client_secret != second.client_secret
    client = in_unit(store, clients.get_client, DEMO_CLIENT_ID)
    assert (client.name, client.context_policy, client.is_public) == ("Demo app", "none", False)
    assert client.check_client_secret(second.client_secret)
    assert not client.check_client_secret(first.client_secret)  # the old one is not kept
    assert [
        row.user.id for row in in_unit(store, users.search_users, None, limit=10, offset=0)
    ] == [first.user_id]
    assert in_unit(store, users.user_detail, first.user_id).user.name == "张三 Zhang San"
    # one signing key per algorithm (RS256, ES256), not one more per seeding
    assert sorted(key.alg for key in in_unit(store, signing_keys.list_keys)) == ["ES256", "RS256"]


def test_seeding_reuses_a_user_with_the_demo_phone(store: Store, box: SecretBox):
    existing = in_unit(store, users.create_user, "Someone", "13800138000")
    assert seed_demo(store, box, ISSUER).user_id == existing.id


def test_example_authorization_is_a_pkce_s256_request(store: Store, box: SecretBox):
    world = seed_demo(store, box, ISSUER)
    example = example_authorization(world, ISSUER)

    url = urlsplit(example.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{ISSUER}/authorize"
    params = {name: values[0] for name, values in parse_qs(url.query).items()}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(example.code_verifier.encode()).digest())
    assert params["code_challenge"] == challenge.rstrip(b"=").decode()
    assert params["code_challenge_method"] == "S256"
    assert (params["client_id"], params["redirect_uri"]) == (world.client_id, world.redirect_uri)
    assert params["response_type"] == "code" and "openid" in params["scope"].split()
    assert params["state"] and params["nonce"]

    words = shlex.split(example.token_command)
    assert words[0] == "curl" and words[-1] == f"{ISSUER}/token"
    assert f"{world.client_id}:{world.client_secret}" in words
    assert f"code_verifier={example.code_verifier}" in words
    assert f"redirect_uri={world.redirect_uri}" in words


def test_seeding_on_another_port_registers_the_new_redirect_uri(store: Store, box: SecretBox):
    seed_demo(store, box, ISSUER)
    moved = seed_demo(store, box, "http://127.0.0.1:9000")
    assert moved.redirect_uri == "http://127.0.0.1:9000/dev/callback"
    client = in_unit(store, clients.get_client, DEMO_CLIENT_ID)
    assert client.redirect_uris == [moved.redirect_uri]
    assert client.check_client_secret(moved.client_secret)


def test_seeding_gives_each_subsidiary_new_callback_settings(store: Store, box: SecretBox):
    first = seed_demo(store, box, ISSUER)
    world = seed_demo(store, box, ISSUER)

    assert [callback.corp_id for callback in world.callbacks] == [CORP_A, CORP_B]
    for callback, before in zip(world.callbacks, first.callbacks, strict=True):
        assert callback.url == f"{ISSUER}/events/wecom/{callback.corp_id}"
        CallbackCrypto(callback.token, callback.encoding_aes_key, callback.corp_id)  # well-formed
        stored = in_unit(store, corps.callback_settings, box, callback.corp_id)
        assert stored is not None
        assert (stored.token, stored.encoding_aes_key) == (
            callback.token,
            callback.encoding_aes_key,
        )
        assert (callback.token, callback.encoding_aes_key) != (
            before.token,
            before.encoding_aes_key,
        )  # new on every start, like the printed secrets
        assert callback.token not in repr(callback)
        assert callback.encoding_aes_key not in repr(callback)


def test_connect_simulator_gives_the_simulator_the_same_settings(store: Store, box: SecretBox):
    world = seed_demo(store, box, ISSUER)
    simulator = WeComSimulator(demo_corps())
    connect_simulator(simulator, world)

    for callback in world.callbacks:
        configured = simulator.callback(callback.corp_id)
        assert configured is not None
        assert (configured.url, configured.token, configured.encoding_aes_key) == (
            callback.url,
            callback.token,
            callback.encoding_aes_key,
        )


def test_in_the_demo_the_leave_button_disables_the_link(
    wecom_app, store: Store, box: SecretBox, simulator: WeComSimulator
):
    """`make demo`'s story: 张三 leaves 子公司A in the simulator's directory page, and the
    server disables the link at once."""
    world = seed_demo(store, box, TEST_ISSUER)
    with TestClient(wecom_app, base_url=TEST_ISSUER) as server:
        connect_simulator(simulator, world, sender=server)
        with TestClient(simulator.app) as wecom:
            page = wecom.get("/directory")
            match = re.search(r'name="form_token" value="([^"]+)"', page.text)
            assert match is not None
            answer = wecom.post(
                "/directory",
                data={"form_token": match.group(1), "corp_id": CORP_A, "userid": "zhangsan_A"},
            )
    assert answer.status_code == 200
    assert "the server answered 200" in answer.text
    with store() as db:
        links = {
            link.provider_user_id: link.status
            for link in db.scalars(
                select(IdentityLink).where(IdentityLink.user_id == world.user_id)
            )
        }
    assert links == {f"{CORP_A}/zhangsan_A": "disabled", f"{CORP_B}/zs_b": "active"}


def test_the_demo_apps_take_sign_ins_started_elsewhere_at_their_initiate_endpoint(
    store: Store, box: SecretBox
):
    seed_demo(store, box, ISSUER)
    first = seed_relying_parties(store, ISSUER, 8000)
    for party in first:
        client = in_unit(store, clients.get_client, party.config.client_id)
        assert client.initiate_login_uri == f"{party.config.base_url}/initiate"
        assert party.config.base_url == f"http://127.0.0.1:{party.port}"
    # A database of an older demo, whose apps had none: the next start registers it.
    in_unit(store, clients.update_client, "crm", actor="test", initiate_login_uri="")
    again = {party.config.name: party for party in seed_relying_parties(store, ISSUER, 8000)}
    crm = in_unit(store, clients.get_client, "crm")
    assert crm.initiate_login_uri == "http://127.0.0.1:8002/initiate"
    assert crm.check_client_secret(again["crm"].config.client_secret)


def test_the_printed_workbench_links_are_grouped_by_app(store: Store, box: SecretBox):
    seed_demo(store, box, ISSUER)
    parties = seed_relying_parties(store, ISSUER, 8000)

    lines = workbench_lines(parties, ISSUER)

    text = "\n".join(lines)
    assert lines[0].startswith("Workbench links")
    learning, crm = text.index("学习平台 Learning platform:"), text.index("CRM 客户管理:")
    assert learning < crm
    for start, end, client_id in ((learning, crm, "learning-platform"), (crm, len(text), "crm")):
        group = text[start:end]
        for corp_id, name in ((CORP_A, "子公司A"), (CORP_B, "子公司B")):
            link = f"{ISSUER}/launch/{client_id}/wecom/{corp_id}"
            assert re.search(rf"^ +{name} +{re.escape(link)}$", group, re.M), group
    assert text.count("/launch/") == 4
    assert workbench_lines((), ISSUER) == []
