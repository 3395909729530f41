"""The admin console in browser tests: its admin, the server on a fresh database, signing in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.datastructures import Secret

from iam.app import SIMULATOR_PATH, create_app
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.secretbox import SecretBox
from iam.services import signing_keys
from iam.services.sms import ConsoleSms
from iam.settings import Settings
from support.constants import TEST_SECRET
from support.servers import free_ports, serving
from support.units import in_unit

T = TypeVar("T")
ADMIN, PASSWORD = "ops-admin", "a long console passphrase"


@contextmanager
def served_console(
    database_url: str,
    seed: Callable[[Store], T],
    prepare: Callable[[Starlette], Any] = lambda app: None,
) -> Iterator[tuple[str, Store, T]]:
    """The identity server in dev mode with the WeCom simulator mounted, on this SQLite file
    (migrated here unless it is already), seeded by `seed`; `prepare` sees the app before it
    serves. Gives the issuer, the store and what `seed` returned."""
    engine = create_db_engine(database_url)
    try:
        migrate.upgrade(engine)
        store = Store(engine)
        in_unit(store, signing_keys.ensure_key, SecretBox(TEST_SECRET))
        seeded = seed(store)
        [port] = free_ports(1)
        issuer = f"http://127.0.0.1:{port}"
        settings = Settings(
            secret_key=Secret(TEST_SECRET),
            issuer=issuer,
            database_url=database_url,
            dev_mode=True,
            wecom_api_base=issuer + SIMULATOR_PATH,
        )
        app = create_app(settings, store=store, sms=ConsoleSms())
        prepare(app)
        with serving({port: app}):
            yield issuer, store, seeded
    finally:
        engine.dispose()


def sign_in_to_console(page: Page, issuer: str, query: str = "") -> None:
    """The admin signs in on the console's login page."""
    page.goto(f"{issuer}/admin/login{query}")
    page.fill("#username", ADMIN)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Admin sign-in").click()
    expect(page.locator("header .who")).to_have_text(ADMIN)
