"""Request hygiene: CSRF tokens for the browser forms, the request body limit, the rate-limit client key, who
may read the operator's pages, and the headers every HTML page carries."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "feedsvc_csrf"
CSRF_FIELD = "csrf_token"


def page_headers(form_target: str) -> dict[str, str]:
    """For every HTML page: no script, no framing (clickjacking), forms only to this service, no sniffing, and
    no Referer (page URLs carry tokens). Inline styles stay allowed: the templates, yours too, use them."""
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"form-action 'self' {form_target}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "content-security-policy": policy,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }


def bearer_matches(authorization: bytes, token: str) -> bool:
    return bool(token) and hmac.compare_digest(authorization, f"Bearer {token}".encode())


class OperatorOnly:
    """Pages for the operator (metrics, the API description): with the admin token, or from trusted networks."""

    def __init__(self, admin_token: str, networks: Iterable[str]) -> None:
        self._token = admin_token
        self._networks = [ipaddress.ip_network(network, strict=False) for network in networks]

    def require(self, request: Request) -> None:
        if not self.allows(request):
            raise HTTPException(
                401,
                "`Authorization: Bearer <web.admin_token>` is required from outside [web] metrics_networks",
                headers={"WWW-Authenticate": 'Bearer realm="feedsvc admin"'},
            )

    def allows(self, request: Request) -> bool:
        if bearer_matches(request.headers.get("authorization", "").encode("latin-1"), self._token):
            return True
        try:
            address = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison that takes any text given (compare_digest refuses non-ASCII strings)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


class Csrf:
    """Signed double submit, bound to a session secret the server chose.

    The server sets a random session secret in a cookie, signed under the service secret (a value it never
    issued is not honoured: a new one replaces it), and the form carries an HMAC of that secret. A cross-site
    page can make the browser send the cookie but can neither read it nor compute the form token. Under https
    the cookie has the `__Host-` prefix: browsers then take it only from this very host over https, for path /,
    so a sibling subdomain can neither plant nor overwrite it (plain http has no such guard).
    """

    def __init__(self, secret: str, *, secure: bool) -> None:
        key = hashlib.sha256(b"feedsvc.csrf\x00" + secret.encode()).digest()
        self._cookie_key = hmac.new(key, b"cookie", hashlib.sha256).digest()
        self._form_key = hmac.new(key, b"form", hashlib.sha256).digest()
        self._secure = secure
        self.cookie = ("__Host-" if secure else "") + CSRF_COOKIE

    @staticmethod
    def _mac(key: bytes, session: str) -> str:
        return hmac.new(key, session.encode(), hashlib.sha256).hexdigest()

    def _session(self, request: Request) -> str | None:
        """The session secret this server issued to this browser, if the cookie holds one."""
        session, _, mac = request.cookies.get(self.cookie, "").partition(".")
        if len(session) == 43 and session.isascii() and _same(self._mac(self._cookie_key, session), mac):
            return session
        return None

    def token(self, request: Request) -> tuple[str, str | None]:
        """The form token for this browser, and a new cookie value to set when it has no valid one yet."""
        session = self._session(request)
        if session is not None:
            return self._mac(self._form_key, session), None
        session = secrets.token_urlsafe(32)
        return self._mac(self._form_key, session), f"{session}.{self._mac(self._cookie_key, session)}"

    def set_cookie(self, response: Response, value: str | None) -> None:
        # Written out rather than through http.cookies (a third of a home page request): the value is
        # URL-safe base64, a dot and hex, nothing to quote.
        if value:
            attributes = "; HttpOnly; Path=/; SameSite=lax" + ("; Secure" if self._secure else "")
            response.raw_headers.append((b"set-cookie", f"{self.cookie}={value}{attributes}".encode()))

    def valid(self, request: Request, submitted: object) -> bool:
        session = self._session(request)
        if session is None or not isinstance(submitted, str):
            return False
        return _same(self._mac(self._form_key, session), submitted)


class BodyLimit:
    """413 for a request body over `max_bytes` (per-path `overrides` for uploads), declared or streamed.

    Raises HTTPException from `receive`, so the app's error handler renders the answer; nothing is read
    past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, overrides: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = dict(overrides or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope["path"], self.max_bytes)
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        too_large = declared is not None and (not declared.isdigit() or int(declared) > limit)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:
                raise HTTPException(413, f"the request body is larger than {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def client_key(request: Request) -> str:
    """Who a client is, for rate limits: its IPv4 address, or its IPv6 /64 (one subscriber line's whole range)."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)
