#!/usr/bin/env python3
"""Seed a migrated IAM database for the benchmark and print one JSON line:
{"client_id", "client_secret", "session_cookie"}.

Reads the usual IAM_* settings (IAM_DATABASE_URL, IAM_SECRET_KEY, ...); run `iam db upgrade`
first. Idempotent: the client `bench` gets a fresh secret if it exists already (the old one
stops working), the user (phone BENCH_PHONE, default 13900000001) is reused, and every run
starts one new SSO session (amr ["sms"]) whose cookie value is printed.

Run it with the project's interpreter:  .venv/bin/python bench/seed.py
`bench/seed.py CLIENT_ID ALG` seeds (or re-secrets) another client whose access tokens are
signed with ALG (RS256 or ES256), with its own session for the same user.
"""

from __future__ import annotations

import json
import os
import sys

from sqlalchemy import select

from iam import settings as iam_settings
from iam.db.models import Client, User
from iam.db.store import Store, create_db_engine
from iam.db.unit import one_unit
from iam.services import clients, sessions, users
from iam.services.phones import normalize_phone

CLIENT_ID = "bench"
REDIRECT_URI = "http://127.0.0.1:9/cb"
NEEDED_GRANTS = {"authorization_code", "refresh_token", "client_credentials"}
NEEDED_SCOPES = {"openid", "profile", "email"}


def seed_client(store: Store, client_id: str = CLIENT_ID, alg: str = "RS256") -> tuple[str, str]:
    with store() as db:
        exists = db.get(Client, client_id) is not None
    if exists:
        registered = one_unit(
            store,
            lambda db: clients.rotate_secret(db, client_id, keep_previous=False, actor="bench"),
        )
    else:
        registered = one_unit(
            store,
            lambda db: clients.create_client(
                db,
                client_id,
                [REDIRECT_URI],
                client_id=client_id,
                access_token_signing_alg=alg,
                actor="bench",
            ),
        )
    client = registered.client
    missing = NEEDED_GRANTS - set(client.grant_types)
    if missing:
        raise SystemExit(f"client {client_id} lacks grant types {sorted(missing)}")
    missing = NEEDED_SCOPES - set(client.allowed_scopes.split())
    if missing:
        raise SystemExit(f"client {client_id} lacks scopes {sorted(missing)}")
    if REDIRECT_URI not in client.redirect_uris:
        raise SystemExit(f"client {client_id} lacks redirect_uri {REDIRECT_URI}")
    assert registered.client_secret is not None
    return client.client_id, registered.client_secret


def seed_user(store: Store, phone: str) -> User:
    with store() as db:
        user = db.scalar(select(User).where(User.phone == normalize_phone(phone)))
    if user is not None:
        return user
    return one_unit(
        store, lambda db: users.create_user(db, "Bench User", phone, "bench.user@example.test")
    )


def main() -> int:
    settings = iam_settings.load()
    engine = create_db_engine(settings.database_url)
    try:
        store = Store(engine)
        client_id, client_secret = seed_client(store, *sys.argv[1:3])
        user = seed_user(store, os.environ.get("BENCH_PHONE", "13900000001"))
        with store() as db:
            new = sessions.start(db, user, ["sms"], ip="127.0.0.1", user_agent="bench")
            db.commit()
    finally:
        engine.dispose()
    print(
        json.dumps(
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "session_cookie": new.cookie_value,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
