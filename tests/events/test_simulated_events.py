"""The WeCom simulator's change events reach our receiver as WeCom's would (issue #13, point 4):
the simulator seals them with the corporation's callback settings and POSTs them to
`/events/wecom/{corp_id}` (here through a TestClient on the app), and the server acts on them; a
wrong Token is refused and the simulator says so. Its directory page's "leaves the corporation"
button does the same."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from support.browser import WeComFront
from support.constants import CORP_A, CORP_B, ISSUER
from support.units import in_unit
from support.wecom import META_A, META_B, set_callback
from support.world import World

from iam.db.models import DirectoryEvent, IdentityLink
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.services import users

TOKEN = "SimToken42"
KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
URL_A = f"{ISSUER}/events/wecom/{CORP_A}"


@pytest.fixture
def receiving(
    wecom_front: WeComFront, store: Store, world: World, simulator: WeComSimulator
) -> WeComFront:
    """Subsidiary A's app has callback settings; the simulated WeCom knows the same and POSTs
    into the app; 张三 is linked in both subsidiaries."""
    set_callback(store, CORP_A, TOKEN, KEY)
    simulator.configure_callback(CORP_A, URL_A, TOKEN, KEY, sender=wecom_front.client)
    in_unit(store, users.link_wecom, world.user.id, CORP_A, "zhangsan_A", META_A)
    in_unit(store, users.link_wecom, world.user.id, CORP_B, "zs_b", META_B)
    return wecom_front


def links_of_a(store: Store) -> list[IdentityLink]:
    with store() as db:
        return list(
            db.scalars(select(IdentityLink).where(IdentityLink.provider_user_id.startswith(CORP_A)))
        )


def stored_events(store: Store) -> list[DirectoryEvent]:
    with store() as db:
        return list(db.scalars(select(DirectoryEvent)))


def test_a_member_leaving_disables_the_link_at_once(
    receiving: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    delivery = simulator.member_leaves(CORP_A, "zhangsan_a")  # userids are case-insensitive
    assert (delivery.url, delivery.status_code, delivery.accepted) == (URL_A, 200, True)
    assert (delivery.change_type, delivery.userid) == ("delete_user", "zhangsan_A")
    (link,) = links_of_a(store)
    assert (link.status, link.disabled_reason) == ("disabled", "left")
    (event,) = stored_events(store)
    assert (event.change_type, event.outcome) == ("delete_user", "disabled")


def test_a_rename_rekeys_the_one_link(
    receiving: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    before = links_of_a(store)
    delivery = simulator.member_renamed(CORP_A, "zhangsan_A", "zhang.san")
    assert delivery.accepted, delivery.summary()
    (link,) = links_of_a(store)
    assert (link.id, link.provider_user_id) == (before[0].id, f"{CORP_A}/zhang.san")
    assert link.status == "active"


def test_a_position_change_refreshes_the_link(
    receiving: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    delivery = simulator.member_changed(CORP_A, "zhangsan_A", position="区域总监")
    assert delivery.accepted, delivery.summary()
    (link,) = links_of_a(store)
    assert link.link_metadata["position"] == "区域总监"


def test_a_wrong_token_is_refused_and_the_simulator_reports_it(
    receiving: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    simulator.configure_callback(CORP_A, URL_A, "WrongToken", KEY, sender=receiving.client)
    delivery = simulator.member_leaves(CORP_A, "zhangsan_A")
    assert (delivery.status_code, delivery.accepted) == (400, False)
    assert "answered 400" in delivery.summary()
    assert stored_events(store) == []
    (link,) = links_of_a(store)
    assert link.status == "active"  # the event was refused; the next sync finds the leaver


def test_without_callback_settings_the_member_leaves_and_nothing_is_sent(
    receiving: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    delivery = simulator.member_leaves(CORP_B, "zs_b")
    assert (delivery.sent, delivery.status_code) == (False, None)
    assert "no callback settings" in delivery.summary()
    assert simulator.issue_code(CORP_A, "zhangsan_A")  # A's members are all still there
    with pytest.raises(KeyError):
        simulator.issue_code(CORP_B, "zs_b")  # B's has left the directory
    assert stored_events(store) == []


def test_the_leave_button_disables_the_link(
    receiving: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    page = receiving.wecom.get("/directory")
    assert page.status_code == 200
    assert f'Events go to <span class="url">{URL_A}</span>' in page.text
    match = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert match is not None
    answer = receiving.wecom.post(
        "/directory",
        data={"form_token": match.group(1), "corp_id": CORP_A, "userid": "zhangsan_A"},
    )
    assert answer.status_code == 200, answer.text
    assert "the server answered 200" in answer.text
    (link,) = links_of_a(store)
    assert link.status == "disabled"
    with store() as db:
        assert db.scalar(select(func.count()).select_from(DirectoryEvent)) == 1
