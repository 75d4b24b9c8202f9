"""The only code that encrypts or decrypts secrets; it never logs or returns a plaintext it was not asked for."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


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
