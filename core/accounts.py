"""Editors and admins of the desk: argon2id password hashes, two roles."""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from core.addresses import normalize_email
from core.context import Context
from core.db import new_id, utcnow
from core.errors import InvalidInput, NotFound, StateError
from core.models import users

ROLES = ("admin", "editor")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong address costs the same time.
_DUMMY = _hasher.hash("not a real password, only for timing")


def _check(password: str, role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD} characters")


def add_user(ctx: Context, email: str, password: str, role: str) -> int:
    _check(password, role)
    addr = normalize_email(email)
    try:
        with ctx.engine.begin() as conn:
            return new_id(conn.execute(insert(users).values(
                email=addr, password_hash=_hasher.hash(password), role=role,
                created_at=utcnow())))
    except IntegrityError as exc:
        raise StateError(f"a user {addr} exists already") from exc


def set_password(ctx: Context, email: str, password: str, role: str | None = None) -> None:
    with ctx.engine.begin() as conn:
        row = conn.execute(select(users).where(users.c.email == normalize_email(email))).first()
        if row is None:
            raise NotFound(f"no user {email!r}")
        _check(password, role or row.role)
        conn.execute(update(users).where(users.c.id == row.id).values(
            password_hash=_hasher.hash(password), role=role or row.role))


def authenticate(ctx: Context, email: str, password: str) -> Any | None:
    """The user row when the password matches, else None (same work either way)."""
    try:
        addr = normalize_email(email)
    except InvalidInput:
        addr = ""
    with ctx.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.email == addr)).first() if addr else None
    try:
        _hasher.verify(row.password_hash if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    values: dict[str, Any] = {"last_login_at": utcnow()}
    if _hasher.check_needs_rehash(row.password_hash):
        values["password_hash"] = _hasher.hash(password)
    with ctx.engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
    return row


def get_user(ctx: Context, user_id: int) -> Any | None:
    with ctx.engine.connect() as conn:
        return conn.execute(select(users).where(users.c.id == user_id)).first()


def list_users(ctx: Context) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(conn.execute(select(users.c.id, users.c.email, users.c.role,
                                        users.c.last_login_at).order_by(users.c.id)))
