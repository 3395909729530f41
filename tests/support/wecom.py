"""WeCom as the outside world: the simulator with its two demo corporations, connected to the
app, and what it says about 张三 in each."""

from __future__ import annotations

from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from iam.app import create_app
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.secretbox import SecretBox
from iam.services import corps
from iam.services.sms import ConsoleSms
from iam.settings import Settings
from support.constants import CORP_A, CORP_B, TEST_SECRET, WECOM_BASE
from support.units import in_unit

#: What WeCom says about 张三 in each subsidiary (the simulator's demo world), as link metadata.
META_A = {
    "provider": "wecom",
    "corpid": CORP_A,
    "corp_name": "子公司A",
    "userid": "zhangsan_A",
    "name": "张三",
    "department": ["销售部"],
    "position": "销售经理",
    "avatar": "",
    "status": 1,
}
META_B = {
    "provider": "wecom",
    "corpid": CORP_B,
    "corp_name": "子公司B",
    "userid": "zs_b",
    "name": "张三",
    "department": ["售后服务部"],
    "position": "售后顾问",
    "avatar": "",
    "status": 1,
}


@pytest.fixture
def simulator() -> WeComSimulator:
    return WeComSimulator(demo_corps())


@pytest.fixture
def wecom_settings(settings: Settings) -> Settings:
    return replace(
        settings,
        wecom_api_base=WECOM_BASE,
        wecom_oauth_url=f"{WECOM_BASE}/connect/oauth2/authorize",
        wecom_qr_url=f"{WECOM_BASE}/wwlogin/sso/login",
    )


def connect_corp(store: Store, simulator: WeComSimulator, corp_id: str, **options: bool) -> None:
    """Connect one of the simulator's corporations, with the simulator's secret."""
    corp = next(c for c in demo_corps() if c.corp_id == corp_id)
    in_unit(
        store,
        corps.add_corp,
        SecretBox(TEST_SECRET),
        corp.corp_id,
        corp.name,
        corp.agent_id,
        corp.secret,
        **options,
    )


@pytest.fixture
def wecom_app(wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator):
    """The app, with both demo corporations connected, reaching WeCom through the simulator."""
    connect_corp(store, simulator, CORP_A)
    connect_corp(store, simulator, CORP_B)
    return create_app(wecom_settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))


def set_callback(store: Store, corp_id: str, token: str, encoding_aes_key: str) -> None:
    """Give a connected corporation its app's callback settings (Token, EncodingAESKey)."""
    in_unit(
        store,
        corps.update_corp,
        SecretBox(TEST_SECRET),
        corp_id,
        actor="test",
        callback_token=token,
        encoding_aes_key=encoding_aes_key,
    )
