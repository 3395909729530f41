"""Admin console accounts; passwords hashed with argon2 (passlib, from libpass)."""

from __future__ import annotations

import re

from passlib.hash import argon2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from iam.db.models import Admin
from iam.db.store import Store
from iam.errors import ConflictError, ValidationError
from iam.services import audit

MIN_PASSWORD = 12
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-@]{3,100}$")


def create_admin(store: Store, username: str, password: str) -> Admin:
    if not _USERNAME.match(username or ""):
        raise ValidationError("username", "A username is 3-100 letters, digits or _ . - @.")
    if len(password or "") < MIN_PASSWORD:
        raise ValidationError("password", f"The password needs at least {MIN_PASSWORD} characters.")
    admin = Admin(username=username, password_hash=argon2.hash(password))
    with store() as db:
        taken = ConflictError(f"An admin {username!r} already exists.")
        if db.scalar(select(Admin.id).where(Admin.username == username)):
            raise taken
        db.add(admin)
        audit.record(db, "admin.created", actor="cli", username=username)
        try:
            db.commit()
        except IntegrityError:  # created meanwhile by someone else
            raise taken from None
    return admin
