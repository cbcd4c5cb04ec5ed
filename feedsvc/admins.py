"""Who may use the dashboard: passwords (argon2id), sign-in and server-side sessions, the audit log.

The rules, in one place:
- a wrong password and an unknown account get the same answer after the same work (an argon2 verification
  against a stand-in hash), so the sign-in form tells nobody which accounts exist;
- a session is a random 256-bit value in a cookie; the store keeps only its SHA-256, so a copy of the store
  (a backup) opens no session. Signing in always makes a new one (no session fixation);
- a session ends at sign-out, after IDLE_TIMEOUT without a request, and at the latest MAX_AGE after sign-in;
  a new password ends every session of that user.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine

from feedsvc.store import admin as store
from feedsvc.store.admin import AuditEntry, Session

__all__ = ["AuditEntry", "Session", "SignIn", "audit", "end_session", "session", "set_password", "sign_in"]

DEFAULT_USERNAME = "admin"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this bounds the work one request can cause
IDLE_TIMEOUT = timedelta(hours=2)
MAX_AGE = timedelta(hours=12)

# argon2-cffi's defaults are RFC 9106's second recommended option (argon2id, 64 MiB, 3 passes).
_hasher = PasswordHasher()
# Verified against when the account does not exist, so that answer costs the same time as a wrong password.
_STAND_IN_HASH = _hasher.hash(secrets.token_urlsafe(16))


class WeakPassword(ValueError):
    """The new password cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class SignIn:
    """A new session: the cookie value to give the browser (never stored) and the session itself."""

    cookie: str
    session: Session


def _session_id(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def set_password(engine: Engine, username: str, password: str, now: datetime) -> None:
    """Create the admin user or change its password; every session of that user ends."""
    check_new_password(password)
    with engine.begin() as connection:
        store.set_password(connection, username, _hasher.hash(password), now)
        user = store.user(connection, username)
        assert user is not None
        store.end_sessions_of(connection, user.id)


def password_matches(engine: Engine, username: str, password: str) -> bool:
    """Whether this is the user's password; as slow for an unknown user as for a wrong password."""
    with engine.connect() as connection:
        user = store.user(connection, username)
    try:
        return _hasher.verify(user.password_hash if user else _STAND_IN_HASH, password[:MAX_PASSWORD_LENGTH]) and bool(user)
    except (VerificationError, InvalidHashError):
        return False


def sign_in(engine: Engine, username: str, password: str, now: datetime, *, ip: str, user_agent: str) -> SignIn | None:
    """A new session when the password is right, else None."""
    if not password_matches(engine, username, password):
        return None
    cookie = secrets.token_urlsafe(32)
    with engine.begin() as connection:
        user = store.user(connection, username)
        if user is None:  # removed in between
            return None
        store.prune_sessions(connection, now)
        store.add_session(
            connection, id=_session_id(cookie), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
            created_at=now, last_seen_at=now, expires_at=now + IDLE_TIMEOUT, ip=ip[:64], user_agent=user_agent[:512],
        )
        store.audit(connection, at=now, username=username, action="sign_in", target="", detail="", ip=ip[:64])
        opened = store.session(connection, _session_id(cookie), now)
    assert opened is not None
    return SignIn(cookie, opened)


def session(engine: Engine, cookie: str, now: datetime) -> Session | None:
    """The live session this cookie names (its idle time restarted), or None."""
    if not cookie or len(cookie) > 64:
        return None
    session_id = _session_id(cookie)
    with engine.begin() as connection:
        found = store.session(connection, session_id, now)
        if found is None or now >= found.created_at + MAX_AGE:
            return None
        # Written at most once a minute: a page view is a read, not a write, on a busy store.
        if now - found.last_seen_at > timedelta(minutes=1):
            store.touch_session(connection, session_id, now, min(now + IDLE_TIMEOUT, found.created_at + MAX_AGE))
    return found


def end_session(engine: Engine, cookie: str, now: datetime, *, ip: str) -> None:
    session_id = _session_id(cookie)
    with engine.begin() as connection:
        found = store.session(connection, session_id, now)
        store.end_session(connection, session_id)
        if found:
            store.audit(connection, at=now, username=found.username, action="sign_out", target="", detail="", ip=ip[:64])


def audit(engine: Engine, session: Session, action: str, now: datetime, *, ip: str, target: str = "", detail: str = "") -> None:
    with engine.begin() as connection:
        store.audit(
            connection, at=now, username=session.username, action=action, target=target[:400], detail=detail[:4000],
            ip=ip[:64],
        )


def audit_page(engine: Engine, *, before_id: int | None, limit: int = 50) -> list[AuditEntry]:
    with engine.connect() as connection:
        return store.audit_page(connection, before_id=before_id, limit=limit)
