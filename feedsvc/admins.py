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

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine

from feedsvc.store import admin as store
from feedsvc.store.admin import AdminUser, AuditEntry, Session

__all__ = ["AuditEntry", "Session", "SignIn", "audit", "end_session", "session", "set_password", "sign_in"]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this bounds the work one request can cause
IDLE_TIMEOUT = timedelta(hours=2)
MAX_AGE = timedelta(hours=12)
TOTP_DIGITS = 6
RECOVERY_CODES = 10

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


def _normalised_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _code_hash(code: str) -> str:
    return hashlib.sha256(_normalised_code(code).encode()).hexdigest()


def _second_factor_passes(connection: Connection, user: AdminUser, code: str, now: datetime) -> bool:
    """True without a second factor; else whether `code` is a fresh TOTP code or an unspent recovery code
    (which is spent here)."""
    if user.totp_secret is None:
        return True
    code = _normalised_code(code)
    if len(code) == TOTP_DIGITS and code.isdigit():
        totp = pyotp.TOTP(user.totp_secret)
        for skew in (-1, 0, 1):
            moment = now + timedelta(seconds=skew * totp.interval)
            if hmac.compare_digest(totp.at(moment), code):
                return store.use_time_step(connection, user.id, totp.timecode(moment))
        return False
    return bool(code) and store.use_recovery_code(connection, user.id, _code_hash(code), now)


def sign_in(
    engine: Engine, username: str, password: str, code: str, now: datetime, *, ip: str, user_agent: str
) -> SignIn | None:
    """A new session when the password (and the second factor, when on) is right, else None."""
    if not password_matches(engine, username, password):
        return None
    cookie = secrets.token_urlsafe(32)
    with engine.begin() as connection:
        user = store.user(connection, username)
        if user is None or not _second_factor_passes(connection, user, code, now):
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


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read (type it in, or paste it)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def turn_on_second_factor(engine: Engine, username: str, secret: str, code: str, now: datetime) -> list[str] | None:
    """Turn TOTP on once `code` shows the authenticator holds `secret`; the new recovery codes (shown once),
    or None when the code does not match."""
    totp = pyotp.TOTP(secret)
    if not totp.verify(_normalised_code(code), for_time=now, valid_window=1):
        return None
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    with engine.begin() as connection:
        user = store.user(connection, username)
        assert user is not None
        store.set_second_factor(connection, user.id, secret, [_code_hash(code) for code in codes])
        store.use_time_step(connection, user.id, totp.timecode(now))  # the code just shown is spent
    return codes


def turn_off_second_factor(engine: Engine, username: str) -> None:
    with engine.begin() as connection:
        user = store.user(connection, username)
        assert user is not None
        store.set_second_factor(connection, user.id, None, [])


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 80 bits
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True, slots=True)
class SecondFactor:
    on: bool
    recovery_codes_left: int


def second_factor(engine: Engine, username: str) -> SecondFactor:
    with engine.connect() as connection:
        user = store.user(connection, username)
        assert user is not None
        return SecondFactor(user.totp_secret is not None, store.recovery_codes_left(connection, user.id))


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
