"""The only code that encrypts or decrypts secrets, and the column type that stores them encrypted at rest; it never
logs or returns a plaintext it was not asked for."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

# Where the plugin keeps the app's Crypto (set by init_app), so the column type finds the operator's keys.
CRYPTO_EXTENSION = "itam_admin.crypto"


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""

    def __init__(self) -> None:
        super().__init__(
            "A stored secret cannot be decrypted with the configured ITAM_ENCRYPTION_KEYS; "
            "add the key it was encrypted with, or save the secret again."
        )


class Crypto:
    """MultiFernet over the operator's keys: the first key encrypts, every key decrypts."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable() from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a stored value with the first key (a no-op in meaning, new ciphertext)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable() from None

    def __repr__(self) -> str:
        return "Crypto(<keys hidden>)"


def generate_key() -> str:
    return Fernet.generate_key().decode()


def app_crypto() -> Crypto:
    """The Crypto of the current app (set by the plugin's init_app)."""
    return current_app.extensions[CRYPTO_EXTENSION]


class EncryptedText(TypeDecorator):
    """A text column stored as Fernet ciphertext: plaintext in Python, ciphertext in the database (Redash's
    EncryptedConfiguration pattern). Written with the first key; read with any configured key."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else app_crypto().encrypt(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else app_crypto().decrypt(value)
