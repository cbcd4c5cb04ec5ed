"""Dashboard rows: admin users, their sessions and the audit log. The rules live in `feedsvc.admins`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from feedsvc.store.dialects import upsert
from feedsvc.store.schema import admin_audit, admin_recovery_codes, admin_sessions, admin_users


@dataclass(frozen=True, slots=True)
class AdminUser:
    id: int
    username: str
    password_hash: str
    created_at: datetime
    password_changed_at: datetime
    totp_secret: str | None
    totp_last_step: int | None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: int
    username: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    username: str
    action: str
    target: str
    detail: str
    ip: str


def user(connection: Connection, username: str) -> AdminUser | None:
    row = connection.execute(select(admin_users).where(admin_users.c.username == username)).first()
    return AdminUser(**row._mapping) if row else None


def set_password(connection: Connection, username: str, password_hash: str, now: datetime) -> None:
    """Create the user, or give it a new password hash."""
    statement = (
        upsert(connection, admin_users)
        .values(username=username, password_hash=password_hash, created_at=now, password_changed_at=now)
        .on_conflict_do_update(
            index_elements=[admin_users.c.username],
            set_={"password_hash": password_hash, "password_changed_at": now},
        )
    )
    connection.execute(statement)


def set_second_factor(connection: Connection, user_id: int, secret: str | None, code_hashes: list[str]) -> None:
    """Turn TOTP on with this secret and these recovery codes (replacing any before), or off with None."""
    connection.execute(
        update(admin_users).where(admin_users.c.id == user_id).values(totp_secret=secret, totp_last_step=None)
    )
    connection.execute(delete(admin_recovery_codes).where(admin_recovery_codes.c.user_id == user_id))
    if code_hashes:
        connection.execute(insert(admin_recovery_codes), [{"user_id": user_id, "code_hash": h} for h in code_hashes])


def use_time_step(connection: Connection, user_id: int, step: int) -> bool:
    """Record a TOTP time step as used; False when it or a later one was used already (a replayed code)."""
    c = admin_users.c
    statement = (
        update(admin_users)
        .where(c.id == user_id, or_(c.totp_last_step.is_(None), c.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return connection.execute(statement).rowcount == 1


def use_recovery_code(connection: Connection, user_id: int, code_hash: str, now: datetime) -> bool:
    """Spend a recovery code; False when it is not one of the user's or was spent already."""
    c = admin_recovery_codes.c
    statement = (
        update(admin_recovery_codes)
        .where(c.user_id == user_id, c.code_hash == code_hash, c.used_at.is_(None))
        .values(used_at=now)
    )
    return connection.execute(statement).rowcount == 1


def recovery_codes_left(connection: Connection, user_id: int) -> int:
    c = admin_recovery_codes.c
    return connection.execute(select(func.count()).where(c.user_id == user_id, c.used_at.is_(None))).scalar_one()


def add_session(connection: Connection, **values: Any) -> None:
    connection.execute(insert(admin_sessions).values(**values))


def session(connection: Connection, session_id: str, now: datetime) -> Session | None:
    """The session unless it expired."""
    statement = (
        select(admin_sessions, admin_users.c.username)
        .join(admin_users, admin_users.c.id == admin_sessions.c.user_id)
        .where(admin_sessions.c.id == session_id, admin_sessions.c.expires_at > now)
    )
    row = connection.execute(statement).first()
    return Session(**row._mapping) if row else None


def touch_session(connection: Connection, session_id: str, now: datetime, expires_at: datetime) -> None:
    connection.execute(
        update(admin_sessions).where(admin_sessions.c.id == session_id).values(last_seen_at=now, expires_at=expires_at)
    )


def end_session(connection: Connection, session_id: str) -> None:
    connection.execute(delete(admin_sessions).where(admin_sessions.c.id == session_id))


def end_sessions_of(connection: Connection, user_id: int) -> int:
    return connection.execute(delete(admin_sessions).where(admin_sessions.c.user_id == user_id)).rowcount


def prune_sessions(connection: Connection, now: datetime) -> int:
    return connection.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now)).rowcount


def audit(connection: Connection, **values: Any) -> None:
    connection.execute(insert(admin_audit).values(**values))


def audit_page(connection: Connection, *, before_id: int | None, limit: int) -> list[AuditEntry]:
    """Newest first, `limit` entries older than `before_id` (keyset pagination)."""
    statement = select(admin_audit).order_by(admin_audit.c.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(admin_audit.c.id < before_id)
    return [AuditEntry(**row._mapping) for row in connection.execute(statement)]
