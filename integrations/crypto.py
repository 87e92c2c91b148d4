"""Encryption of secrets at rest (Fernet, from ``cryptography``).

``LANTERN_ENCRYPTION_KEY`` holds one or more comma-separated keys, newest first: each either a
Fernet key or any passphrase (stretched with HKDF). Older keys still decrypt, so keys rotate
without a migration. Without it, a key is derived from ``SECRET_KEY`` (fine for a laptop).
"""

import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretDecryptionError(ValueError):
    """Stored secrets cannot be decrypted with the configured keys."""


def _fernet_key(material: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(material.encode())
        if len(raw) == 32:
            return material.encode()
    except ValueError:
        pass
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"lantern-secrets", info=b"fernet"
    ).derive(material.encode())
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=4)
def _cipher(configured: str, secret_key: str) -> MultiFernet:
    materials = [k.strip() for k in configured.split(",") if k.strip()] or [secret_key]
    return MultiFernet([Fernet(_fernet_key(material)) for material in materials])


def cipher() -> MultiFernet:
    return _cipher(settings.LANTERN_ENCRYPTION_KEY, settings.SECRET_KEY)


def encrypt_json(value: dict) -> str:
    return cipher().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict:
    if not token:
        return {}
    try:
        return json.loads(cipher().decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretDecryptionError(
            "Stored secrets cannot be decrypted: LANTERN_ENCRYPTION_KEY changed without keeping "
            "the old key"
        ) from exc


def encrypted_value(column: str, key: str, doc: str = "") -> property:
    """A model attribute holding one string, stored encrypted as ``{key: value}`` in the text
    column ``column`` (blank when the value is blank), so the plain value is never a column. A
    ``property``, so Django's model constructor and ``create()`` accept it as a keyword."""

    def get(instance) -> str:
        return decrypt_json(getattr(instance, column)).get(key, "")

    def set_(instance, value: str) -> None:
        setattr(instance, column, encrypt_json({key: value}) if value else "")

    return property(get, set_, doc=doc)
