"""Encryption of stored API keys (Fernet, from `cryptography`).

The Fernet key comes from SECRET_KEY or, when unset, from a 0600 file beside the database that
is generated on first start. A keyed hash (HMAC-SHA256 under the same secret) fingerprints keys
so chats sharing one can be grouped without storing it in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger(__name__)


class KeyCipher:
    def __init__(self, secret: str) -> None:
        material = secret.strip().encode()
        try:
            self._fernet = Fernet(material)
        except ValueError:
            # Any passphrase: derive a proper 32-byte Fernet key from it.
            derived = hashlib.sha256(b"stories-bot/fernet\x00" + material).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._mac_key = hashlib.sha256(b"stories-bot/fingerprint\x00" + material).digest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            log.error("a stored secret cannot be decrypted: was SECRET_KEY changed?")
            return None

    def fingerprint(self, plaintext: str) -> str:
        return hmac.new(self._mac_key, plaintext.encode(), hashlib.sha256).hexdigest()[:32]


def load_or_create_secret(database_path: Path) -> str:
    """Read the generated secret beside the database, creating it (0600) if missing."""
    path = database_path.parent / (database_path.name + ".secret")
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    log.warning("SECRET_KEY is unset: generated one in %s (back it up with the database)", path)
    return secret
