"""HTTP Signatures in the two forms the fediverse uses.

- draft-cavage-http-signatures (Mastodon, snac, most servers): `Signature: keyId=…,algorithm=…,headers=…,
  signature=…` over `(request-target) host date digest`, with `Digest: SHA-256=…` and a `Date` within a window.
- RFC 9421 HTTP Message Signatures (`Signature-Input` + `Signature`, `Content-Digest`, `created`), verified
  with the `http-message-signatures` library.

feedsvc signs its own requests with draft-cavage, which every server verifies. Verification takes the sender's
public key from a callable (the actor's document, fetched and cached by `network`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import http_sf
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from http_message_signatures import HTTPMessageSignaturesException, HTTPMessageVerifier, algorithms
from http_message_signatures import InvalidSignature as InvalidMessageSignature
from http_message_signatures.resolvers import MappingKeyResolver


class SignatureError(Exception):
    """The request's signature is missing, malformed, stale or wrong; the message says which."""


class KeyGone(SignatureError):
    """The key's actor answered 410 Gone: the account was deleted."""


@dataclass(frozen=True, slots=True)
class Verified:
    key_id: str
    scheme: str  # "cavage" or "rfc9421"


# Fetches the PEM public key for a key id (and may refetch it when `fresh`, after a key rotation).
KeyFetcher = Callable[[str, bool], Awaitable[str]]


def sha256_digest(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign_cavage(request: httpx.Request, private_key: rsa.RSAPrivateKey, key_id: str, *, now: datetime | None = None) -> None:
    """Sign an outgoing request in place (draft-cavage, rsa-sha256), adding Date, Host and, with a body, Digest."""
    request.headers["date"] = format_datetime(now or datetime.now(UTC), usegmt=True)
    request.headers["host"] = request.url.netloc.decode()
    names = ["(request-target)", "host", "date"]
    if request.method == "POST":
        request.headers["digest"] = f"SHA-256={sha256_digest(request.content)}"
        names += ["digest", "content-type"]
    text = _signing_string(request.method, _target(request.url.raw_path.decode()), request.headers, names)
    signature = private_key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    request.headers["signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(names)}",'
        f'signature="{base64.b64encode(signature).decode()}"'
    )


def _target(path_and_query: str) -> str:
    return path_and_query or "/"


def _signing_string(method: str, target: str, headers: Mapping[str, str], names: list[str]) -> str:
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name in ("(created)", "(expires)"):
            raise SignatureError(f"signed pseudo-header {name} is not supported; sign Date instead")
        else:
            if name not in headers:
                raise SignatureError(f"signed header {name!r} is missing from the request")
            lines.append(f"{name}: {headers[name]}")
    return "\n".join(lines)


_PARAM = re.compile(r'(\w+)="([^"]*)"')


def key_id_of(headers: Mapping[str, str]) -> str:
    """The key id a request names, in either form (SignatureError when it names none)."""
    if "signature-input" in headers:
        return _rfc9421_input(headers)[1]
    if "signature" in headers:
        params = dict(_PARAM.findall(headers["signature"]))
        if params.get("keyId"):
            return params["keyId"]
        raise SignatureError("the Signature header has no keyId")
    raise SignatureError("the request is not signed (no Signature header)")


async def verify(
    method: str, url: str, headers: Mapping[str, str], body: bytes, fetch_key: KeyFetcher, *, max_age: int,
    now: datetime | None = None,
) -> Verified:
    """Verify a request's signature against the key its key id names; the verified key id, or SignatureError.

    `url` is the request's full URL as the sender addressed it (the public URL, behind a proxy). A key that
    fails is fetched once more (the sender may have rotated it) before the request is refused."""
    now = now or datetime.now(UTC)
    key_id = key_id_of(headers)
    scheme = "rfc9421" if "signature-input" in headers else "cavage"
    check = _verify_rfc9421 if scheme == "rfc9421" else _verify_cavage
    for fresh in (False, True):
        pem = await fetch_key(key_id, fresh)
        try:
            check(method, url, headers, body, _public_key(pem), key_id, max_age=max_age, now=now)
        except _WrongKey:
            continue
        return Verified(key_id, scheme)
    raise SignatureError(f"the signature does not verify with the key {key_id}")


class _WrongKey(Exception):
    """The signature is well formed and fresh but does not verify with this key."""


def _public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise SignatureError("the actor's publicKeyPem is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("only RSA keys are supported")
    return key


def _verify_cavage(
    method: str, url: str, headers: Mapping[str, str], body: bytes, key: rsa.RSAPublicKey, key_id: str, *,
    max_age: int, now: datetime,
) -> None:
    params = dict(_PARAM.findall(headers["signature"]))
    if params.get("algorithm", "rsa-sha256") not in ("rsa-sha256", "hs2019"):
        raise SignatureError(f"unsupported signature algorithm {params['algorithm']!r}")
    names = params.get("headers", "date").lower().split()
    required = {"(request-target)", "host", "date"} | ({"digest"} if method == "POST" else set())
    if missing := required - set(names):
        raise SignatureError(f"the signature does not cover {', '.join(sorted(missing))}")
    try:
        signed_at = parsedate_to_datetime(headers["date"])
    except (TypeError, ValueError):
        raise SignatureError("the Date header is not a date") from None
    if abs((now - signed_at).total_seconds()) > max_age:
        raise SignatureError(f"the Date header is more than {max_age} s from now")
    if method == "POST":
        algorithm, _, value = headers["digest"].partition("=")
        if algorithm.upper() != "SHA-256" or not hmac.compare_digest(value, sha256_digest(body)):
            raise SignatureError("the Digest header does not match the body")
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    text = _signing_string(method, _target(target), headers, names)
    try:
        signature = base64.b64decode(params.get("signature", ""), validate=True)
        key.verify(signature, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise _WrongKey from None


def _rfc9421_input(headers: Mapping[str, str]) -> tuple[str, str]:
    """(label, keyid) of the one signature Mastodon-shaped requests carry."""
    try:
        parsed: dict[str, Any] = http_sf.parse(headers["signature-input"].encode(), tltype="dictionary")  # type: ignore[assignment]
    except ValueError:
        raise SignatureError("the Signature-Input header is malformed") from None
    if len(parsed) != 1:
        raise SignatureError("expected exactly one signature in Signature-Input")
    label, (_, params) = next(iter(parsed.items()))
    if not isinstance(params.get("keyid"), str):
        raise SignatureError("Signature-Input has no keyid")
    return label, params["keyid"]


def _verify_rfc9421(
    method: str, url: str, headers: Mapping[str, str], body: bytes, key: rsa.RSAPublicKey, key_id: str, *,
    max_age: int, now: datetime,
) -> None:
    request = httpx.Request(method, url, headers=list(headers.items()))
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.RSA_V1_5_SHA256,
        key_resolver=MappingKeyResolver(public_keys={key_id: key}, private_keys={}),
    )
    required = ["@method", "@target-uri"] + (["content-digest"] if method == "POST" else [])
    try:
        results = verifier.verify(request, max_age=timedelta(seconds=max_age), require_components=required, body=body if method == "POST" else None)
    except InvalidMessageSignature:
        raise _WrongKey from None
    except HTTPMessageSignaturesException as exc:
        raise SignatureError(f"RFC 9421 signature refused: {exc}") from None
    created = results[0].parameters.get("created")
    if not isinstance(created, int):
        raise SignatureError("the RFC 9421 signature has no created time")

