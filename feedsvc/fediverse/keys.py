"""The actor's RSA key pair: made on first start, kept in the store's folder, readable by the owner only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_FILE = "fediverse-key.pem"


@dataclass(frozen=True)
class KeyPair:
    private_key: rsa.RSAPrivateKey

    @cached_property
    def public_pem(self) -> str:
        public = self.private_key.public_key()
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_or_create(folder: Path) -> KeyPair:
    """The key pair in `folder`, created (2048-bit RSA, as Mastodon uses, mode 0600) when there is none yet."""
    path = folder / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        # O_EXCL: two processes starting at once keep one key, the second reads the first's.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create(folder)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        return KeyPair(key)
    loaded = serialization.load_pem_private_key(data, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise TypeError(f"{path} does not hold an RSA private key")
    return KeyPair(loaded)
