"""DKIM signing (dkimpy) of finished messages, when `mail.dkim_selector`, `dkim_domain` and `dkim_key_file` are set."""

from __future__ import annotations

from feedsvc.config import Settings

# The headers a receiver must see unchanged; the per-subscriber ones included, since each mail is signed whole.
SIGNED_HEADERS = (
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"MIME-Version", b"Content-Type",
    b"List-Id", b"List-Unsubscribe", b"List-Unsubscribe-Post",
)


class DkimConfigError(ValueError):
    """The DKIM settings are incomplete or the key cannot be read."""


class DkimSigner:
    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.private_key = private_key
        # Imported only when DKIM is configured: dkimpy brings dnspython, a tenth of a `digest send`'s start-up.
        import dkim

        self._sign = dkim.sign

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        mail = settings.mail
        configured = [bool(mail.dkim_selector), bool(mail.dkim_domain), mail.dkim_key_file is not None]
        if not any(configured):
            return None
        if not all(configured):
            raise DkimConfigError("DKIM needs all of mail.dkim_selector, mail.dkim_domain and mail.dkim_key_file")
        assert mail.dkim_key_file is not None
        try:
            key = mail.dkim_key_file.read_bytes()
        except OSError as exc:
            raise DkimConfigError(f"mail.dkim_key_file {mail.dkim_key_file} cannot be read: {exc}") from None
        return cls(mail.dkim_selector, mail.dkim_domain, key)

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header prepended."""
        signature = self._sign(
            message,
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return signature + message
